"""Drift correction and re-measurement of the profiler, on a simulated machine whose speed wanders."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from canao.latency import profile as profiling
from canao.latency.device import make_executor
from canao.latency.profile import (
    DRIFT_BAND,
    BlockTiming,
    drift_band,
    drift_factor,
    parse_block_key,
    quiet_level,
    settle,
)
from tests.latency.conftest import CONFIG


def test_drift_factor_and_settle_by_hand():
    slow = [1.0, 1.0, 1.0, 1.3, 1.3, 1.3, 1.3, 1.0, 1.0, 1.0]  # a stretch 1.3x slow (load, a frequency drop)
    reference = [{"at": 10 * i + 1, "median_ms": v} for i, v in enumerate(slow)]
    assert quiet_level(reference) == 1.0 and drift_band(reference) == DRIFT_BAND  # noise 0: the floor
    factor = drift_factor(reference)  # smoothed (rolling median of 5): 1, 1, 1, 1.3, 1.3, 1.3, 1.3, 1, 1, 1
    assert factor(41) == pytest.approx(1 / 1.3) and factor(26) == pytest.approx(1 / 1.15)
    assert factor(11) == 1.0 and factor(0) == 1.0 and factor(200) == 1.0  # outside: nearest reference
    assert drift_factor(reference[:1])(11) == 1.0  # one reference timing corrects nothing
    entry = {"sweeps": [{"median_ms": 2.6, "at": 51}, {"median_ms": 2.2, "at": 91}]}
    settled = settle(entry, factor)
    assert settled["median_ms"] == pytest.approx(2.0)  # 2.6 measured while the machine ran 1.3x slow
    assert settled["raw_ms"] == 2.2 and settled["spread"] == pytest.approx(0.1)


def test_reference_noise_alone_corrects_nothing():
    """One reference block read +-7% apart on an idle machine is noise, not drift: correcting by it put its
    noise into every block (idle Xeon, 40 models: MAPE 4.6% corrected, 2.8% not), so nothing is corrected."""
    rng = np.random.default_rng(0)
    reference = [{"at": 4 * i, "median_ms": 1.4 * (1 + rng.uniform(-0.07, 0.07))} for i in range(30)]
    factor = drift_factor(reference)
    assert all(factor(t) == 1.0 for t in range(0, 120))
    assert drift_band(reference) >= DRIFT_BAND
    reference[10:20] = [{**r, "median_ms": r["median_ms"] * 1.3} for r in reference[10:20]]  # then real drift
    assert drift_factor(reference)(60) < 0.85


def _simulate(monkeypatch, slow_key=None):
    """Patch the profiler's timers with a machine running up to 1.4x slow in slow waves; `slow_key`'s
    first sweep also catches a burst the reference does not see."""
    calls = {"n": 0, "seen": {}}

    def drift(t: int) -> float:
        return 1.0 + 0.4 * (0.5 - 0.5 * math.cos(2 * math.pi * t / 90))

    def true_ms(job) -> float:
        block, hidden, heads, ffn, seq = job
        return {"embed": 0.1, "head": 0.05}.get(block, 0.01 * heads + 0.002 * ffn) * hidden / 16 * seq / 8

    def timing(ms: float) -> BlockTiming:
        calls["n"] += 1
        return BlockTiming(ms, ms, ms, 0.0, 5, 0)

    def fake_block(job, config, executor, workdir):
        t, key = calls["n"], profiling.block_key(job[0], job[1], job[4], job[2], job[3])
        burst = 1.5 if key == slow_key and key not in calls["seen"] else 1.0
        calls["seen"][key] = True
        return timing(true_ms(job) * drift(t) * burst)

    def fake_model(spec, executor, seq_len, **kwargs):
        ms = sum(true_ms(("layer", spec.hidden, x.heads, x.ffn, seq_len)) for x in spec.layers) + 0.2
        return timing(ms * drift(calls["n"]))

    monkeypatch.setattr(profiling, "_measure_block", fake_block)
    monkeypatch.setattr(profiling, "measure_model", fake_model)
    return true_ms


def _truth(true_ms, key: str) -> float:
    block, hidden, seq, heads, ffn = parse_block_key(key)
    return true_ms((block, hidden, heads, ffn, seq))


def test_drift_correction_recovers_quiet_latencies(monkeypatch, tmp_path):
    true_ms = _simulate(monkeypatch)
    config = dataclasses.replace(CONFIG, reference_every=3, agree_tol=0.5)
    profile = profiling.profile_device(config, make_executor("local"), tmp_path / "p.json")
    corrected = [abs(e["median_ms"] / _truth(true_ms, k) - 1) for k, e in profile.blocks.items()]
    raw = [abs(e["raw_ms"] / _truth(true_ms, k) - 1) for k, e in profile.blocks.items()]
    assert max(corrected) < DRIFT_BAND + 0.01  # every block back within the drift band of its quiet latency
    assert max(raw) > 0.15  # while the fastest raw sweep of some blocks was well off
    off = dataclasses.replace(config, reference_every=0)
    plain = profiling.profile_device(off, make_executor("local"), tmp_path / "plain.json")
    assert not plain.reference and all(e["median_ms"] == e["raw_ms"] for e in plain.blocks.values())


def test_disagreeing_sweeps_are_measured_again(monkeypatch, tmp_path):
    slow = profiling.block_key("layer", 16, 8, 1, 16)  # not the reference block (H24 A2 F40 T16)
    true_ms = _simulate(monkeypatch, slow_key=slow)
    config = dataclasses.replace(CONFIG, reference_every=3, agree_tol=0.08, extra_sweeps=2)
    profile = profiling.profile_device(config, make_executor("local"), tmp_path / "p.json")
    assert len(profile.blocks[slow]["sweeps"]) == 3  # the burst made its two sweeps disagree by ~50%
    assert profile.blocks[slow]["median_ms"] == pytest.approx(_truth(true_ms, slow), rel=0.05)
    assert profile.blocks[slow]["spread"] < 0.08
    assert sum(len(e["sweeps"]) == 2 for e in profile.blocks.values()) == len(profile.blocks) - 1
