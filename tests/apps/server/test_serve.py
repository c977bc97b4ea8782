"""`canao serve` as users run it: a process that serves named artifacts and, on SIGTERM, lets the request in
flight finish before it exits cleanly."""

from __future__ import annotations

import json
import signal

import httpx

from canao.apps.server.serve import parse_model_args
from tests.apps.server.conftest import start_serve


def test_model_names_default_to_the_directory_and_must_be_unique(tmp_path):
    assert parse_model_args([str(tmp_path / "a"), f"b={tmp_path / 'a'}"]) == {"a": tmp_path / "a", "b": tmp_path / "a"}
    try:
        parse_model_args([str(tmp_path / "a"), f"a={tmp_path / 'b'}"])
    except Exception as err:
        assert "two artifacts are named `a`" in str(err)
    else:
        raise AssertionError("duplicate names were accepted")


def test_sigterm_lets_the_stream_in_flight_finish(lm_art, qa_path):
    proc, url = start_serve([f"story={lm_art.path}", f"reader={qa_path}"])
    try:
        names = [m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]]
        assert names == ["story", "reader"]
        body = {"model": "story", "prompt": "ROMEO:", "max_new_tokens": 200, "stream": True}
        kinds, done = [], None
        with httpx.stream("POST", f"{url}/v1/generate", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line[7:])
                    if len(kinds) == 1:
                        proc.send_signal(signal.SIGTERM)  # mid-stream
                elif line.startswith("data: ") and kinds[-1] == "done":
                    done = json.loads(line[6:])
        assert done is not None and done["new_tokens"] == 200, kinds[-3:]
        assert proc.wait(timeout=60) == 0
        try:
            httpx.get(f"{url}/healthz", timeout=2)
            raise AssertionError("the server still accepts connections after SIGTERM")
        except httpx.TransportError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
