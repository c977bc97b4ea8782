"""Loaded models behind a bounded queue: who may run, who waits, who is turned away.

A compiled model owns one activation arena, so one instance runs one call at
a time (CompiledModel serialises calls with a lock). A `ModelPool` holds
`instances` independently loaded copies of an artifact (separate arenas) and
admits at most `instances + max_queue` requests at once: the rest are told
to come back (HTTP 429 with Retry-After) instead of piling up. An admitted
request that waits longer than `queue_timeout_s` for a free instance gets a
503. Native calls run on a thread pool sized to the instances, so the event
loop keeps serving /healthz and /metrics while models compute.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional, TypeVar

from canao.compiler.artifact import Artifact, load_artifact

T = TypeVar("T")


class QueueFull(Exception):
    def __init__(self, model: str, retry_after_s: int) -> None:
        super().__init__(f"model `{model}` has too many requests in flight; retry in {retry_after_s} s.")
        self.retry_after_s = retry_after_s


class QueueTimeout(Exception):
    pass


@dataclass(frozen=True)
class PoolSettings:
    instances: int = 1  # loaded copies of each artifact (requests served in parallel per model)
    threads: int = 2  # OpenMP threads per instance
    max_queue: int = 16  # requests that may wait per model beyond the running ones
    queue_timeout_s: float = 30.0  # longest wait for a free instance
    trust_artifacts: bool = False  # load builds made elsewhere as they are (else they are compiled again here)


class ModelPool:
    def __init__(self, name: str, artifacts: list[Artifact], settings: PoolSettings, note: str = "") -> None:
        if not artifacts:
            raise ValueError("a pool needs at least one loaded artifact")
        self.name, self.settings = name, settings
        self.note = note  # shown in /v1/models (e.g. why a bundled model runs at its precision)
        self.info = artifacts[0]
        self.task = artifacts[0].model.task
        self.instances = len(artifacts)
        self._all = list(artifacts)
        self._free: Optional[asyncio.Queue[Artifact]] = None  # made in the serving loop (see _queue)
        self.in_flight = 0  # admitted requests: running + waiting
        self.running = 0
        self.executor = ThreadPoolExecutor(max_workers=self.instances, thread_name_prefix=f"canao-{name}")
        self._mean_s = 0.5  # moving mean of a request's service time, for Retry-After

    @classmethod
    def load(cls, name: str, path: Path, settings: PoolSettings) -> "ModelPool":
        loaded = [
            load_artifact(path, threads=settings.threads, trust=settings.trust_artifacts)
            for _ in range(settings.instances)
        ]
        return cls(name, loaded, settings)

    def _queue(self) -> "asyncio.Queue[Artifact]":
        if self._free is None:
            self._free = asyncio.Queue()
            for art in self._all:
                self._free.put_nowait(art)
        return self._free

    @property
    def waiting(self) -> int:
        return self.in_flight - self.running

    def retry_after_s(self) -> int:
        """Seconds until a slot likely frees: the queue ahead times the mean service time, per instance."""
        return max(1, round(self._mean_s * (self.waiting + 1) / self.instances))

    @asynccontextmanager
    async def instance(self) -> AsyncIterator[Artifact]:
        """Admit (or raise QueueFull), wait for a free instance (or raise QueueTimeout), lend it, take it back."""
        if self.in_flight >= self.instances + self.settings.max_queue:
            raise QueueFull(self.name, self.retry_after_s())
        self.in_flight += 1
        try:
            try:
                art = await asyncio.wait_for(self._queue().get(), timeout=self.settings.queue_timeout_s)
            except asyncio.TimeoutError:
                raise QueueTimeout(
                    f"model `{self.name}` stayed busy for {self.settings.queue_timeout_s:.0f} s; retry later."
                ) from None
            self.running += 1
            started = time.perf_counter()
            try:
                yield art
            finally:
                self.running -= 1
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - started)
                self._queue().put_nowait(art)
        finally:
            self.in_flight -= 1

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` (a native call) on the pool's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
