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


def _raw_exchange(port: int, data: bytes, wait_s: float) -> tuple[bytes, bool]:
    """Send `data` on a fresh connection, then read until the server closes it or `wait_s` passes: (what
    came back, whether the server closed the connection; False when our own wait ran out first)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except socket.timeout:
            return received, False
    return received, True


def test_slow_headers_and_stalled_bodies_are_cut_off(qa_path, cls_path, lm_art):
    server = LiveServer(make_pools(PoolSettings(), qa_path, cls_path, lm_art), header_timeout_s=1.0, body_timeout_s=1.0)
    try:
        stalled = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
        stalled += b"\r\n" + b'{"text": "a f'  # 13 of the 100 bytes it declared, then nothing
        reply, closed = _raw_exchange(server.port, stalled, wait_s=20)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"did not arrive within 1 s" in reply and closed
        reply, closed = _raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", wait_s=20)  # no blank line
        assert reply == b"" and closed  # the server closed it without a response, before our wait ran out
        with server.client() as c:
            assert c.get("/healthz").status_code == 200  # a normal client is unaffected, keep-alive included
            assert c.get("/healthz").status_code == 200
    finally:
        server.stop()


def test_tokens_of_a_stream_the_client_cut_are_counted(live):
    def generated() -> float:
        for line in live.client().get("/metrics").text.splitlines():
            if line.startswith('canao_generated_tokens_total{model="lm"}'):
                return float(line.split()[-1])
        return 0.0

    before = generated()
    body = {"prompt": "ROMEO:", "max_new_tokens": 400, "stream": True}
    with live.client() as c, c.stream("POST", "/v1/generate", json=body) as response:
        tokens = 0
        for line in response.iter_lines():
            tokens += line.startswith("event: token")
            if tokens == 5:
                break  # the client goes away mid-stream
    assert generated() - before >= 5


def test_every_route_of_the_app_is_counted_under_its_own_name(live):
    """Metrics read the matched route from the router: no second list of routes to keep in step."""
    from starlette.routing import Mount

    paths = {route.path for route in live.server.config.app.routes if not isinstance(route, Mount)}
    assert {"/v1/qa", "/v1/classify", "/v1/generate", "/v1/models", "/healthz", "/metrics", "/"} <= paths
    with live.client() as c:
        for path in sorted(paths):
            c.get(path)  # the POST routes answer 405: still counted under their template
        c.get("/static/app.js")
        c.get("/no/such/route")
        metrics = c.get("/metrics").text
    for path in paths | {"/static"}:
        assert f'canao_requests_total{{route="{path}",' in metrics, path
    assert 'canao_requests_total{route="other",status="404"} 1.0' in metrics
