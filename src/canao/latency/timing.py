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
    q25, q50, q75, q90 = np.percentile(samples, [25, 50, 75, 90])
    return TimingStats(float(q50), float(q90), float(samples.min()), float(q75 - q25), runs)
