"""The HTTP API on a live loopback server: answers equal the in-process apps, errors are 4xx naming the
problem, the queue bound turns requests away with 429 + Retry-After, and metrics count it all."""

from __future__ import annotations

import json

import pytest

from canao.apps.generate import GenerationSettings, generate
from canao.apps.inference import classify
from canao.apps.qa import QAOptions, answer_questions
from canao.apps.server.pool import PoolSettings
from tests.apps.server.conftest import LiveServer, make_pools

CONTEXT = "The compiler was written by the canao team in 2026. It fuses layers and generates C code."


def sse_events(lines) -> list[tuple[str, dict]]:
    events, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: ") :])))
    return events


def test_health_models_and_page(live):
    with live.client() as c:
        assert c.get("/healthz").json() == {"status": "ok", "models": 3}
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        assert {n: m["task"] for n, m in models.items()} == {"qa": "qa", "cls": "classification", "lm": "lm"}
        assert models["lm"]["max_positions"] == 256 and models["qa"]["precision"] == "fp32"
        page = c.get("/")
        assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
        assert c.get("/static/app.js").status_code == 200
        assert "http://" not in page.text and "https://" not in page.text  # nothing from outside
        schema = c.get("/openapi.json").json()
        assert {"/v1/qa", "/v1/classify", "/v1/generate", "/v1/models", "/healthz", "/metrics"} <= set(schema["paths"])


def test_qa_classify_and_generate_equal_the_in_process_apps(live):
    qa, cls, lm = (live.pools[n].info for n in ("qa", "cls", "lm"))
    with live.client() as c:
        got = c.post("/v1/qa", json={"question": ["Who wrote it?", "When?"], "context": CONTEXT, "top_k": 2})
        assert got.status_code == 200, got.text
        want = answer_questions(qa, ["Who wrote it?", "When?"], CONTEXT, QAOptions(top_k=2))
        for result, answers in zip(got.json()["results"], want.answers):
            assert [(a["text"], a["start"], a["end"]) for a in result["answers"]] == [
                (a.text, a.start, a.end) for a in answers
            ]
        got = c.post("/v1/classify", json={"text": "a fine film", "text_pair": "good"}).json()
        assert got["probabilities"] == pytest.approx(classify(cls, "a fine film", "good"))
        assert got["label"] in ("negative", "positive")
        body = {"prompt": "ROMEO:", "max_new_tokens": 24, "temperature": 0.9, "top_k": 40, "seed": 3}
        got = c.post("/v1/generate", json=body).json()
        want_text = generate(lm, "ROMEO:", GenerationSettings(24, 0.9, 40, seed=3)).text
        assert got["text"] == want_text and got["stats"]["new_tokens"] == 24
        with c.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.iter_lines())
        assert events[-1][0] == "done" and events[-1][1]["new_tokens"] == 24
        assert "".join(e["text"] for k, e in events if k == "token") == want_text
        assert sum(k == "token" for k, _ in events) > 5


@pytest.mark.parametrize(
    "route, body, status, named",
    [
        ("/v1/qa", {"model": "nope", "question": "q", "context": "c"}, 404, "no model `nope`"),
        ("/v1/qa", {"model": "lm", "question": "q", "context": "c"}, 404, "needs `qa`"),
        ("/v1/qa", {"question": "q"}, 422, "context"),
        ("/v1/qa", {"question": "  ", "context": "c"}, 422, "question"),
        ("/v1/qa", {"question": ["q"] * 17, "context": "c"}, 422, "question"),
        ("/v1/qa", {"question": "q", "context": "c" * 50_001}, 422, "context"),
        ("/v1/generate", {"prompt": "x", "max_new_tokens": 5000}, 422, "max_new_tokens"),
        ("/v1/generate", {"prompt": "x", "top_p": 0}, 422, "top_p"),
        ("/v1/generate", {"prompt": "x", "stop": [""]}, 422, "stop"),
        ("/v1/generate", {"prompt": "x", "temprature": 1}, 422, "temprature"),
        ("/v1/classify", {"text": ""}, 422, "text"),
        ("/v1/classify", {"model": "qa", "text": "x"}, 404, "needs `classification`"),
    ],
)
def test_bad_requests_get_4xx_naming_the_problem(live, route, body, status, named):
    with live.client() as c:
        response = c.post(route, json=body)
    assert response.status_code == status, response.text
    assert named in response.text


def test_malformed_and_oversized_bodies(live):
    with live.client() as c:
        bad = c.post("/v1/qa", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 422
        big = c.post("/v1/qa", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
        assert big.status_code == 413 and "bytes" in big.json()["detail"]

        def chunks():  # no Content-Length: the limit applies while reading
            for _ in range(40):
                yield b" " * 65536

        chunked = c.post("/v1/qa", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        assert c.get("/healthz").status_code == 200  # still serving


def test_full_queue_gets_429_with_retry_after_and_metrics_count_it(qa_path, cls_path, lm_art):
    server = LiveServer(
        make_pools(PoolSettings(instances=1, max_queue=0), qa_path, cls_path, lm_art), request_timeout_s=30
    )
    try:
        with server.client() as c:
            release = server.hold("lm")  # deterministic: the only instance is busy, the queue holds 0
            turned_away = c.post("/v1/generate", json={"prompt": "B", "max_new_tokens": 2})
            other_model = c.post("/v1/classify", json={"text": "fine"})  # other models keep serving
            release.set()
            assert turned_away.status_code == 429 and int(turned_away.headers["retry-after"]) >= 1
            assert other_model.status_code == 200
            metrics = c.get("/metrics").text
        assert 'canao_requests_total{route="/v1/generate",status="429"} 1.0' in metrics
        assert 'canao_rejected_total{model="lm"} 1.0' in metrics
        assert 'canao_request_latency_seconds_count{route="/v1/classify"} 1.0' in metrics
        assert 'canao_queue_depth{model="lm"} 0.0' in metrics
    finally:
        server.stop()


def test_waiting_too_long_is_503_and_running_too_long_stops_generation(qa_path, cls_path, lm_art):
    settings = PoolSettings(instances=1, max_queue=2, queue_timeout_s=0.3)
    server = LiveServer(make_pools(settings, qa_path, cls_path, lm_art), request_timeout_s=0.5)
    try:
        with server.client() as c:
            release = server.hold("lm")
            waited = c.post("/v1/generate", json={"prompt": "B", "max_new_tokens": 2})  # admitted, waits 0.3 s
            release.set()
            results = {"long": c.post("/v1/generate", json={"prompt": "A", "max_new_tokens": 1000})}
        assert waited.status_code == 503 and "busy" in waited.json()["detail"]
        stats = results["long"].json()["stats"]
        assert stats["stop_reason"] in ("timeout", "context_full") and stats["new_tokens"] < 1000
    finally:
        server.stop()
