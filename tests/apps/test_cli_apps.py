"""`canao qa` and `canao generate` end to end on small compiled artifacts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from canao.cli import app

runner = CliRunner()


def test_qa_prints_answers_and_a_latency_breakdown(qa_path, tmp_path):
    context = tmp_path / "story.txt"
    context.write_text("The compiler was written by the canao team in 2026. " * 20)
    args = ["qa", str(qa_path), "-q", "Who wrote it?", "-q", "When?", "--context-file", str(context)]
    result = runner.invoke(app, [*args, "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("A: ") == 4 and "Q: When?" in result.output
    assert "latency: tokenise" in result.output and "windows)" in result.output  # a long context: several
    result = runner.invoke(app, [*args, "--json"])
    payload = json.loads(result.output)
    assert [r["question"] for r in payload["results"]] == ["Who wrote it?", "When?"]
    assert payload["timings"]["windows"] > 1


def test_qa_refuses_bad_input(qa_path, lm_art, tmp_path):
    result = runner.invoke(app, ["qa", str(qa_path), "-q", "who?"])
    assert result.exit_code == 2 and "exactly one of --context and --context-file" in result.output
    result = runner.invoke(app, ["qa", str(qa_path), "-q", "  ", "--context", "x"])
    assert result.exit_code == 2 and "need some text" in result.output
    result = runner.invoke(app, ["qa", str(qa_path), "-q", "who?", "--context-file", str(tmp_path / "none.txt")])
    assert result.exit_code == 2 and "none.txt" in result.output
    result = runner.invoke(app, ["qa", str(lm_art.path), "-q", "who?", "--context", "x"])
    assert result.exit_code == 2 and "needs a `qa` artifact" in result.output


def test_generate_streams_and_reports_speed(lm_art):
    args = ["generate", str(lm_art.path), "--prompt", "ROMEO:", "--max-new-tokens", "12", "--temperature", "0.7"]
    first = runner.invoke(app, [*args, "--seed", "5"])
    again = runner.invoke(app, [*args, "--seed", "5"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("ROMEO:") and "12 tokens | first token" in first.output
    assert "tokens/s | stopped: max_new_tokens" in first.output
    assert first.output.split("12 tokens")[0] == again.output.split("12 tokens")[0]  # same seed, same text
    long = runner.invoke(app, ["generate", str(lm_art.path), "--prompt", "to be " * 400, "--max-new-tokens", "4"])
    assert long.exit_code == 0 and "the prompt was cut" in long.output


def test_serve_refuses_an_address_it_cannot_listen_on_before_loading(lm_art):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = runner.invoke(app, ["serve", str(lm_art.path), "--port", str(port)])
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in result.output
    assert "serving" not in result.output  # refused before any model was loaded
    result = runner.invoke(app, ["serve", str(lm_art.path), "--host", "no-such-host.invalid"])
    assert result.exit_code == 2 and "does not resolve" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_run_refuses_texts_it_would_ignore(lm_art):
    result = runner.invoke(app, ["run", str(lm_art.path), "--text", "a", "--text", "b"])
    assert result.exit_code == 2 and "continues one --text" in result.output


def test_an_artifact_with_nan_weights_is_refused_not_answered(lm_art, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file

    from canao.apps.generate import GenerationSettings, generate
    from canao.apps.inference import AppError
    from canao.compiler.artifact import load_artifact, write_artifact

    weights = {k: np.full_like(v, np.nan) for k, v in load_file(str(lm_art.path / "model.safetensors")).items()}
    write_artifact(tmp_path / "nan", lm_art.model.spec, weights, task="lm", tokenizer=lm_art.tokenizer)
    with pytest.raises(AppError, match="NaN or infinite"):
        generate(load_artifact(tmp_path / "nan"), "ROMEO:", GenerationSettings(max_new_tokens=4))
    result = runner.invoke(app, ["generate", str(tmp_path / "nan"), "--prompt", "ROMEO:"])
    assert result.exit_code == 2 and "NaN or infinite" in result.output


def test_qa_bounds_the_context_and_shows_progress_over_many_windows(qa_path, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("The compiler was written by the canao team in 2026. " * 400)  # 20,800 characters
    args = ["qa", str(qa_path), "-q", "Who wrote it?", "--context-file", str(big)]
    result = runner.invoke(app, [*args, "--max-context-chars", "10000"])  # read, then counted
    assert result.exit_code == 2 and "20,800 characters, over --max-context-chars 10,000" in result.output
    result = runner.invoke(app, [*args, "--max-context-chars", "1000"])  # refused from its size, before reading
    assert result.exit_code == 2 and "20,800 bytes, more than --max-context-chars 1,000" in result.output
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reading windows" in result.output and "A: " in result.output  # progress lines off a terminal
    result = runner.invoke(app, [*args, "--json"])
    assert json.loads(result.output)["timings"]["windows"] > 8  # --json prints the object alone
