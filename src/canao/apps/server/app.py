"""The HTTP API and web page over compiled artifacts (FastAPI).

Routes: POST /v1/qa, /v1/classify, /v1/generate (server-sent events with
"stream": true), GET /v1/models, /healthz, /metrics (Prometheus text), / (the
page, served from canao/apps/server/static with no external resources).
Errors are JSON {"detail": ...}: 404 for an unknown model (listing the
served ones), 400 for a model of the wrong task, 413 for oversized bodies,
422 for invalid fields (naming them), 429 with Retry-After when a model's
queue is full, 503 when a request waited too long for a model, and 504 when a
request ran past the server's time limit (generation stops at the limit).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from canao import __version__
from canao.apps.generate import GenerationEvent, GenerationSettings, stream
from canao.apps.inference import AppError, classify
from canao.apps.qa import QAOptions, answer_questions
from canao.apps.server.metrics import BodyLimitMiddleware, Metrics, MetricsMiddleware
from canao.apps.server.pool import ModelPool, QueueFull, QueueTimeout
from canao.apps.server.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    Health,
    ModelInfo,
    ModelsResponse,
    QARequest,
    QAResponse,
)
from canao.errors import CanaoError

STATIC = Path(__file__).resolve().parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in {
        400: "the input cannot be processed",
        404: "no model of that name serves this route",
        408: "the request body stalled (its next part did not arrive in time)",
        413: "request body too large",
        429: "the model's queue is full (see Retry-After)",
        503: "waited too long for a free model instance",
        504: "the request ran past the server's time limit",
    }.items()
}


def printable(text: str) -> str:
    """`text` as valid UTF-8 (a lone surrogate written as its escape), so any JSON encoder can write it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_entry(error: Any) -> dict[str, Any]:
    """One 422 entry: where (loc), what (msg) and the error type, never the rejected input itself (NaN,
    Infinity or a lone surrogate cannot be written back as JSON, and echoing input is not needed to name it)."""
    loc = [part if isinstance(part, int) else printable(str(part)) for part in error.get("loc", ())]
    return {"loc": loc, "msg": printable(str(error.get("msg", ""))), "type": printable(str(error.get("type", "")))}


def create_app(
    pools: dict[str, ModelPool],
    *,
    max_body_bytes: int = 1 << 20,
    request_timeout_s: float = 60.0,
    body_timeout_s: float = 15.0,
) -> FastAPI:
    """The server app over loaded model pools (by name); a body that stalls for `body_timeout_s` gets 408."""
    metrics = Metrics()
    api = FastAPI(
        title="canao",
        version=__version__,
        description="Question answering, classification and text generation on canao-compiled models.",
    )
    api.add_middleware(BodyLimitMiddleware, limit=max_body_bytes, timeout_s=body_timeout_s)
    api.add_middleware(MetricsMiddleware, metrics=metrics, routes=api.router.routes)
    api.state.pools, api.state.metrics = pools, metrics

    def pick(name: Optional[str], task: str) -> ModelPool:
        if name is not None:
            if name not in pools:
                raise HTTPException(404, f"no model `{name}`; served: {', '.join(sorted(pools)) or 'none'}.")
            if pools[name].task != task:  # as good as missing for this route
                raise HTTPException(404, f"model `{name}` is a `{pools[name].task}` model; this route needs `{task}`.")
            return pools[name]
        for pool in pools.values():
            if pool.task == task:
                return pool
        raise HTTPException(404, f"no `{task}` model is served; served: {', '.join(sorted(pools)) or 'none'}.")

    def busy(err: Exception, pool: ModelPool) -> HTTPException:
        if isinstance(err, QueueFull):
            metrics.rejected.labels(pool.name).inc()
            return HTTPException(429, str(err), headers={"Retry-After": str(err.retry_after_s)})
        return HTTPException(503, str(err), headers={"Retry-After": str(pool.retry_after_s())})

    def gauge(pool: ModelPool) -> None:
        metrics.queue_depth.labels(pool.name).set(pool.waiting)
        metrics.in_flight.labels(pool.name).set(pool.in_flight)

    async def run(pool: ModelPool, fn: Any, *args: Any) -> Any:
        """Borrow an instance, run `fn(art, *args)` on the pool's threads, within the request time limit."""
        try:
            async with pool.instance() as art:
                gauge(pool)
                try:
                    return await asyncio.wait_for(pool.call(fn, art, *args), timeout=request_timeout_s)
                except asyncio.TimeoutError:
                    raise HTTPException(504, f"the request ran over {request_timeout_s:.0f} s; shorten it.") from None
                except CanaoError as err:
                    raise HTTPException(400, str(err)) from None
        except (QueueFull, QueueTimeout) as err:
            raise busy(err, pool) from None
        finally:
            gauge(pool)

    @api.post("/v1/qa", response_model=QAResponse, responses=ERRORS, summary="Answer questions from a context")
    async def qa(body: QARequest) -> QAResponse:
        questions = [body.question] if isinstance(body.question, str) else list(body.question)
        pool = pick(body.model, "qa")
        options = QAOptions(doc_stride=body.doc_stride, max_answer_tokens=body.max_answer_tokens, top_k=body.top_k)
        result = await run(pool, answer_questions, questions, body.context, options)
        return QAResponse.model_validate(
            {
                "model": pool.name,
                "results": [
                    {"question": q, "answers": [asdict(a) for a in found]}
                    for q, found in zip(questions, result.answers)
                ],
                "timings": result.timings.to_dict(),
            }
        )

    @api.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS, summary="Classify a text (pair)")
    async def classify_route(body: ClassifyRequest) -> ClassifyResponse:
        pool = pick(body.model, "classification")
        start = time.perf_counter()
        probs = await run(pool, classify, body.text, body.text_pair)
        label = max(probs, key=probs.get)
        return ClassifyResponse(
            model=pool.name, label=label, probabilities=probs, latency_ms=(time.perf_counter() - start) * 1e3
        )

    @api.post(
        "/v1/generate",
        response_model=GenerateResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
        summary="Continue a prompt (JSON, or server-sent events with stream=true)",
    )
    async def generate_route(body: GenerateRequest) -> Any:
        pool = pick(body.model, "lm")
        try:
            settings = GenerationSettings(
                body.max_new_tokens,
                body.temperature,
                body.top_k,
                body.top_p,
                body.repetition_penalty,
                tuple(body.stop),
                body.seed,
            )
        except AppError as err:
            raise HTTPException(400, str(err)) from None
        if not body.stream:
            pieces: list[str] = []
            final: dict[str, Any] = {}
            async for event in _events(pool, body.prompt, settings, request_timeout_s, busy, gauge):
                pieces.append(event.text)
                if event.done:
                    final = event.stats.to_dict()
            metrics.tokens.labels(pool.name).inc(int(final.get("new_tokens", 0)))
            return GenerateResponse(model=pool.name, text="".join(pieces), stats=final)
        events = _events(pool, body.prompt, settings, request_timeout_s, busy, gauge)
        first = await anext(events)  # admission errors (429/503) become HTTP statuses before the stream starts

        async def sse() -> AsyncIterator[str]:
            event: Optional[GenerationEvent] = first
            counted = 0  # tokens counted as generated, as they come: a client that cuts the stream is counted too
            while event is not None:
                metrics.tokens.labels(pool.name).inc(event.generated - counted)
                counted = event.generated
                if event.done:
                    yield f"event: done\ndata: {json.dumps(event.stats.to_dict())}\n\n"
                elif event.text:
                    yield f"event: token\ndata: {json.dumps({'text': event.text})}\n\n"
                event = await anext(events, None)

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @api.get("/v1/models", response_model=ModelsResponse, summary="The models this server serves")
    async def models() -> ModelsResponse:
        return ModelsResponse(
            models=[
                ModelInfo(
                    name=name,
                    task=pool.task,
                    arch=pool.info.model.spec.describe(),
                    precision=str(pool.info.task.get("precision", "fp32")),
                    note=pool.note,
                    simd=pool.info.model.simd,
                    max_positions=pool.info.model.spec.max_positions,
                    instances=pool.instances,
                    in_flight=pool.in_flight,
                )
                for name, pool in pools.items()
            ]
        )

    @api.get("/healthz", response_model=Health, summary="Liveness: the server runs and has its models")
    async def healthz() -> Health:
        return Health(status="ok", models=len(pools))

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.exception_handler(AppError)
    async def app_error(_: Request, err: AppError) -> JSONResponse:
        return JSONResponse({"detail": printable(str(err))}, status_code=400)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [validation_entry(e) for e in err.errors()]}, status_code=422)

    return api


async def _events(
    pool: ModelPool, prompt: str, settings: GenerationSettings, timeout_s: float, busy: Any, gauge: Any
) -> AsyncIterator[GenerationEvent]:
    """Generation events, each step computed on the pool's threads while the instance is held.

    The first item is produced only after admission, so a full queue raises
    before a streaming response has started. Past `timeout_s` generation stops
    (stop_reason "timeout"); a client that goes away stops it at the next token."""
    try:
        async with pool.instance() as art:
            gauge(pool)
            steps = stream(art, prompt, settings, deadline=time.monotonic() + timeout_s)
            while True:
                try:
                    event = await pool.call(next, steps, None)
                except CanaoError as err:
                    raise HTTPException(400, str(err)) from None
                if event is None:
                    return
                yield event
    except (QueueFull, QueueTimeout) as err:
        raise busy(err, pool) from None
    finally:
        gauge(pool)
