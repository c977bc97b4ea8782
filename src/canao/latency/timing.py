"""Wall-clock timing done right: warm-up, perf_counter, median and spread.

Example::

    stats = measure_ms(lambda: model(ids), warmup=3, runs=20)
    print(stats.median_ms, stats.p90_ms)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TimingStats:
    median_ms: float
    p90_ms: float
    min_ms: float
    iqr_ms: float  # interquartile range: the spread, robust to a stray slow run
    runs: int


def _stats(samples: np.ndarray) -> TimingStats:
    q25, q50, q75, q90 = np.percentile(samples, [25, 50, 75, 90])
    return TimingStats(float(q50), float(q90), float(samples.min()), float(q75 - q25), int(samples.size))


def measure_interleaved_ms(
    fns: dict[str, Callable[[], object]], *, warmup: int = 3, runs: int = 20, rounds: int = 5, settle_s: float = 0.1
) -> dict[str, TimingStats]:
    """Time several peers in alternating rounds, so that a noisy neighbour slows them all alike.

    Each of `rounds` rounds runs every peer runs/rounds times in turn (after
    its warm-up calls); the statistics pool all of a peer's samples (at least
    `runs`). Between peers the machine idles `settle_s`, so that thread pools
    that spin after their work (OpenMP, ONNX Runtime) have gone to sleep and
    do not steal cores from the next peer."""
    per_round = max(1, -(-runs // rounds))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for round_index in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle_s)
            for _ in range(warmup if round_index == 0 else 1):
                fn()
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: _stats(np.array(values)) for name, values in samples.items()}


def measure_ms(fn: Callable[[], object], *, warmup: int = 3, runs: int = 20) -> TimingStats:
    """Time `fn` `runs` times after `warmup` untimed calls."""
    if runs < 1:
        raise ValueError(f"`runs >= 1` must hold, but got {runs=}.")
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        samples[i] = (time.perf_counter() - start) * 1e3
    return _stats(samples)
