"""`canao serve`: load artifacts into pools and run the API with uvicorn until SIGTERM/SIGINT.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and lets in-flight
requests (streams included) finish, for up to the request time limit plus a
margin; then the model pools' threads are joined.
"""

from __future__ import annotations

import logging
import signal
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


def serve(pools: dict[str, ModelPool], settings: ServeSettings, *, log_level: Optional[str] = "info") -> None:
    """Serve until a signal; in-flight requests finish first."""
    import uvicorn

    from canao.apps.server.app import create_app

    app = create_app(pools, max_body_bytes=settings.max_body_bytes, request_timeout_s=settings.request_timeout_s)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
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
