"""A live server (uvicorn in a thread, on a free loopback port) over the app tests' artifacts."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import httpx
import pytest
import torch

from canao.apps.server.pool import ModelPool, PoolSettings
from canao.compiler.artifact import write_artifact
from canao.models import build_model
from canao.models.teacher import teacher_dir
from canao.models.tokenizer import load_tokenizer
from tests.apps.conftest import QA_SPEC


def start_serve(args: list[str], timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """`python -m canao serve ARGS --port P` as a user runs it, once /healthz answers: (process, base url)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "canao", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"`canao serve` did not start: {proc.communicate()[0][-2000:]}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, pools: dict[str, ModelPool], header_timeout_s: float = 10.0, **options) -> None:
        import uvicorn

        from canao.apps.server.app import create_app
        from canao.apps.server.serve import bounded_protocol

        self.pools = pools
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(pools, **options),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            http=bounded_protocol(header_timeout_s),
        )
        self.server = uvicorn.Server(config)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def hold(self, model: str) -> threading.Event:
        """Occupy `model`'s only instance as an admitted request would, until the returned event is set."""
        held, release = threading.Event(), threading.Event()

        async def occupy() -> None:
            async with self.pools[model].instance():
                held.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(occupy(), self.loop)
        assert held.wait(30), "could not occupy the instance"
        return release

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def cls_path(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = build_model(QA_SPEC, "classification", num_labels=2)
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("apps") / "cls-tiny"
    labels = {0: "negative", 1: "positive"}
    write_artifact(
        path, QA_SPEC, weights, task="classification", labels=labels, tokenizer=load_tokenizer(teacher_dir())
    )
    return path


def make_pools(settings: PoolSettings, qa_path: Path, cls_path: Path, lm_art) -> dict[str, ModelPool]:
    paths = {"qa": qa_path, "cls": cls_path, "lm": lm_art.path}
    return {name: ModelPool.load(name, path, settings) for name, path in paths.items()}


@pytest.fixture(scope="module")
def live(qa_path, cls_path, lm_art) -> Iterator[LiveServer]:
    server = LiveServer(make_pools(PoolSettings(instances=1, max_queue=4), qa_path, cls_path, lm_art))
    yield server
    server.stop()
