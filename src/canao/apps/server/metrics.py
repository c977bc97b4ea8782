"""Prometheus metrics of the server and the ASGI middlewares that feed them and bound request bodies.

Each app gets its own CollectorRegistry (several apps in one process, as in
tests, do not collide). Requests are labelled by the template of the app's
route that matches them (the middleware matches the request against the
app's own route list, so a route added to the app is counted under its own
name with no second list to keep), and anything that matches no route is
labelled "other", so a scanner cannot blow up the
label cardinality.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence

from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Match

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "canao_requests", "HTTP requests by route and status", ("route", "status"), registry=self.registry
        )
        self.latency = Histogram(
            "canao_request_latency_seconds",
            "Time from request to the end of the response, by route",
            ("route",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "canao_queue_depth",
            "Requests admitted and waiting for a model instance",
            ("model",),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "canao_in_flight", "Requests admitted (running + waiting)", ("model",), registry=self.registry
        )
        self.rejected = Counter(
            "canao_rejected", "Requests turned away with 429 (queue full)", ("model",), registry=self.registry
        )
        self.tokens = Counter("canao_generated_tokens", "Tokens generated", ("model",), registry=self.registry)


def route_label(scope: dict, routes: Sequence[BaseRoute]) -> str:
    """The template of the first of `routes` matching the request in full (a mount: its prefix), or "other"."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "other"


class MetricsMiddleware:
    """Counts every response by (route, status) and times it, streaming responses included."""

    def __init__(self, app: Any, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes  # the app's live route list

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # matched before the app runs: routing then rewrites the scope (a mount moves its prefix to root_path)
        route, status, start = route_label(scope, self.routes), [500], time.perf_counter()

        async def record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes; send a shorter context or prompt.")


class BodyTimeout(HTTPException):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"the request body did not arrive within {timeout_s:g} s; send it whole.")


class BodyLimitMiddleware:
    """413 for bodies over `limit` bytes: at once from Content-Length, or while reading a chunked body; 408 for
    a body whose next part does not arrive within `timeout_s` (a client that declares more than it sends
    would otherwise hold the connection and its handler forever)."""

    def __init__(self, app: Any, limit: int, timeout_s: float = 15.0) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _reply(send, 413, f"request body over {self.limit} bytes; send a shorter context or prompt.")
            return
        seen, complete = [0], [False]

        async def counted() -> dict:
            if complete[0]:  # after the body only a disconnect can come: wait for it as long as the response runs
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=self.timeout_s)
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                complete[0] = not message.get("more_body", False)
                if seen[0] > self.limit:
                    raise BodyTooLarge(self.limit)  # FastAPI turns an HTTPException from body reading into its status
            else:
                complete[0] = True
            return message

        await self.app(scope, counted, send)


async def _reply(send: Callable, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
