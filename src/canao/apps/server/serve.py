"""`canao serve`: load artifacts into pools and run the API with uvicorn until SIGTERM/SIGINT.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and lets in-flight
requests (streams included) finish, for up to the request time limit plus a
margin; then the model pools' threads are joined.

Slow clients are bounded: a connection whose request headers are not all in
within `header_timeout_s` of its start (or of its previous response) is
closed, and a body that stalls gets 408 (the app's body timeout). The listen
address is checked before any model is loaded: a port in use or a host that
does not resolve is one line, not uvicorn's start-up logs and exit 3.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from canao.apps.inference import AppError
from canao.apps.server.pool import ModelPool, PoolSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    pool: PoolSettings = PoolSettings()
    max_body_bytes: int = 1 << 20
    request_timeout_s: float = 60.0
    header_timeout_s: float = 10.0  # longest wait for a request's headers (slowloris)
    body_timeout_s: float = 15.0  # longest wait for the next part of a request body


def parse_model_args(items: list[str]) -> dict[str, Path]:
    """`ART` or `NAME=ART` -> {name: path}; the name defaults to the directory's name and must be unique."""
    named: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).resolve().name, item
        if not name or not path:
            raise AppError(f"`{item}`: give an artifact directory or NAME=DIR.")
        if name in named:
            raise AppError(f"two artifacts are named `{name}`; name them apart with NAME=DIR.")
        named[name] = Path(path)
    return named


def load_pools(models: dict[str, Path], settings: PoolSettings) -> dict[str, ModelPool]:
    return {name: ModelPool.load(name, path, settings) for name, path in models.items()}


def check_listen_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on: a host that does not resolve, or a port
    that is taken or not ours to bind."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise AppError(f"--host {host!r} does not resolve to an address of this machine ({err}).") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise AppError(f"port {port} on {host} is in use; stop what holds it or pass another --port.") from None
            raise AppError(
                f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --host or --port."
            ) from None


def bounded_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline on request headers: uvicorn has none (its keep-alive timer only
    runs between requests and is reset by every byte), so one client sending a header a byte at a time would hold
    a connection for ever."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        _header_timer: "asyncio.TimerHandle | None" = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.info("closing a connection whose request headers took over %.0f s", header_timeout_s)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.IDLE:  # kept alive: the next request's headers get the same bound
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


def serve(pools: dict[str, ModelPool], settings: ServeSettings, *, log_level: Optional[str] = "info") -> None:
    """Serve until a signal; in-flight requests finish first."""
    import uvicorn

    from canao.apps.server.app import create_app

    app = create_app(
        pools,
        max_body_bytes=settings.max_body_bytes,
        request_timeout_s=settings.request_timeout_s,
        body_timeout_s=settings.body_timeout_s,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=bounded_protocol(settings.header_timeout_s),
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        access_log=False,
    )
    # uvicorn catches SIGTERM/SIGINT itself, shuts down gracefully, then re-raises the signal to the handler
    # that was there before it: a no-op here, so that a requested stop ends the command normally (exit 0).
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for pool in pools.values():
            pool.close()
    log.info("server stopped")
