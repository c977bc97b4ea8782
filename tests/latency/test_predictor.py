"""The latency predictor: monotone, fast, close to measured latency, and refusing what the profile does not cover."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from canao.arch import ArchSpec, LayerSpec
from canao.latency.baselines import layer_flops
from canao.latency.device import make_executor
from canao.latency.predictor import LatencyPredictor, isotonic, spearman
from canao.latency.profile import DeviceProfile, measure_model, parse_block_key
from tests.latency.conftest import SPACE


def test_predictor_is_monotone_and_fast(profiled):
    _, profile = profiled
    predictor = LatencyPredictor(profile)
    base = ArchSpec("encoder", 50, 32, 16, (LayerSpec(1, 8, 16),))
    deeper = base.replace(layers=base.layers * 2)
    wider_ffn = base.replace(layers=(LayerSpec(1, 8, 40),))
    more_heads = base.replace(layers=(LayerSpec(2, 8, 16),))
    p = predictor.predict_ms
    assert p(deeper, 8) >= p(base, 8) and p(wider_ffn, 8) >= p(base, 8) and p(more_heads, 8) >= p(base, 8)


def _flops_profile(profile: DeviceProfile) -> DeviceProfile:
    """The measured profile with every block timed at 1 ms per GFLOP (+1 us) and every whole model at 1.2x its
    composed blocks + 0.01 ms: timings with no noise, for the properties noise may hide. Microsecond blocks on a
    shared machine can put the 16-token layer below the 8-token one (CI on stop 34 did), which says nothing
    about how the predictor composes and interpolates."""
    blocks = {}
    for key, entry in profile.blocks.items():
        block, hidden, seq, heads, ffn = parse_block_key(key)
        if block == "layer":
            gflops = layer_flops(hidden, LayerSpec(heads, profile.space.head_dim, ffn), seq) / 1e9
        else:
            gflops = 2.0 * seq * hidden * hidden / 1e9
        blocks[key] = {**entry, "median_ms": gflops + 1e-3}
    clean = dataclasses.replace(profile, blocks=blocks, calibration=[])
    composed = LatencyPredictor(clean)
    calibration = [
        {**c, "median_ms": 1.2 * composed.raw_ms(ArchSpec.from_dict(c["spec"]), c["seq_len"]) + 0.01}
        for c in profile.calibration
    ]
    return dataclasses.replace(clean, calibration=calibration)


def test_predictor_grows_with_length_and_interpolates_between_profiled_points(profiled):
    predictor = LatencyPredictor(_flops_profile(profiled[1]))
    p = predictor.predict_ms
    base = ArchSpec("encoder", 50, 32, 16, (LayerSpec(1, 8, 16),))
    assert p(base, 8) < p(base, 12) < p(base, 16)
    assert p(base, 12) == pytest.approx((p(base, 8) + p(base, 16)) / 2)  # linear in T between profiled lengths
    corner = ArchSpec("encoder", 50, 32, 24, (LayerSpec(2, 8, 40),))
    off_grid = base.replace(hidden=20, layers=(LayerSpec(1, 8, 28),))  # midway in hidden and FFN
    assert p(base, 12) < p(off_grid, 12) < p(corner, 12)
    assert predictor.raw_ms(base, 8) == pytest.approx(
        (layer_flops(16, base.layers[0], 8) + 2 * (2.0 * 8 * 16 * 16)) / 1e9 + 3e-3
    )  # the composition: embedding + layer + head
    assert p(base, 8) == pytest.approx(1.2 * predictor.raw_ms(base, 8) + 0.01)


def test_prediction_is_a_lookup_that_compiles_and_runs_nothing(profiled, monkeypatch):
    """What makes a prediction cheap enough for the search's inner loop (~0.1 ms, docs/latency.md), checked
    without timing: no compiler, no subprocess, no build is touched."""
    import subprocess

    import canao.compiler.build as build_module

    _, profile = profiled
    predictor = LatencyPredictor(profile)
    spec = ArchSpec("encoder", 50, 32, 16, (LayerSpec(1, 8, 16),) * 2)
    want = predictor.predict_ms(spec, 12)

    def forbidden(*args, **kwargs):
        raise AssertionError("a prediction must not compile or run anything")

    for name in ("run", "Popen", "check_output"):
        monkeypatch.setattr(subprocess, name, forbidden)
    monkeypatch.setattr(build_module, "build", forbidden)
    monkeypatch.setattr(build_module, "build_timing_executable", forbidden)
    assert [predictor.predict_ms(spec, 12) for _ in range(100)] == [want] * 100


def test_predictor_tracks_measured_latency(profiled):
    _, profile = profiled
    predictor = LatencyPredictor(profile)
    rng = np.random.default_rng(7)
    specs = [SPACE.sample(rng) for _ in range(4)]
    measured = [measure_model(s, make_executor("local"), 16, reps=9).median_ms for s in specs]
    predicted = [predictor.predict_ms(s, 16) for s in specs]
    errors = [abs(a - b) / b for a, b in zip(predicted, measured)]
    assert np.median(errors) < 0.5  # loose: tiny models on a shared machine; the benchmark measures accuracy


def test_predictor_refuses_specs_outside_the_profile(profiled):
    predictor = LatencyPredictor(profiled[1])
    with pytest.raises(ValueError, match="head_dim"):
        predictor.predict_ms(ArchSpec("encoder", 50, 32, 16, (LayerSpec(1, 4, 16),)), 8)
    with pytest.raises(ValueError, match="seq_len"):
        predictor.predict_ms(ArchSpec("encoder", 50, 32, 16, (LayerSpec(1, 8, 16),)), 64)


def test_isotonic_and_spearman():
    assert isotonic([1, 3, 2, 4]) == [1, 2.5, 2.5, 4]
    assert isotonic([5, 4, 3]) == [4, 4, 4]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_breakdown_adds_up_to_the_prediction(profiled):
    predictor = LatencyPredictor(profiled[1])
    spec = ArchSpec("encoder", 50, 32, 24, (LayerSpec(2, 8, 40), LayerSpec(1, 8, 16)))
    for seq_len in (8, 12, 16):
        parts = predictor.breakdown_ms(spec, seq_len)
        assert set(parts) == {"embedding and head", "layers"} and parts["layers"] > 0
        assert sum(parts.values()) == pytest.approx(predictor.predict_ms(spec, seq_len))


def test_calibration_learns_a_cost_per_layer(profiled):
    """Whole models that pay 0.05 ms a layer beyond their composed blocks (handing a layer's output on, which a
    block timed alone never does) are predicted with that cost once 5+ calibration models span 3+ depths; with
    fewer models it is left out (it cannot be told from the scale)."""
    profile = profiled[1]
    base = LatencyPredictor(profile)
    t = base.seq_lens[0]

    def spec(depth: int) -> ArchSpec:
        layer = LayerSpec(1 + depth % 2, 8, 16 if depth < 4 else 40)
        return ArchSpec("encoder", 50, 32, (16, 24)[depth % 2], (layer,) * depth)

    def measured(s: ArchSpec) -> float:
        return 1.1 * base.raw_ms(s, t) + 0.05 * s.num_layers + 0.02

    others = [e for e in profile.calibration if e["seq_len"] != t]
    entries = [{"spec": spec(d).to_dict(), "seq_len": t, "median_ms": measured(spec(d))} for d in range(1, 7)]
    fitted = LatencyPredictor(dataclasses.replace(profile, calibration=others + entries))
    assert fitted.calibration_at(t) == pytest.approx((1.1, 0.05, 0.02, 0.0), rel=1e-6, abs=1e-9)
    assert fitted.predict_ms(spec(7), t) == pytest.approx(measured(spec(7)), rel=1e-6)
    parts = fitted.breakdown_ms(spec(7), t)
    edges = sum(base._edge_ms(block, spec(7).hidden, t) for block in ("embed", "head"))
    assert parts["layers"] == pytest.approx(1.1 * (base.raw_ms(spec(7), t) - edges) + 0.35)  # the cost per layer
    few = LatencyPredictor(dataclasses.replace(profile, calibration=others + entries[:4]))
    assert few.calibration_at(t)[1] == 0.0


def test_calibration_is_fitted_per_profiled_length(profiled):
    """Whole models that run 30% over their composed blocks at one length and exactly at them at the other are
    predicted so at each length, and in between by interpolation (one fit over both would miss both)."""
    profile = profiled[1]
    base = LatencyPredictor(profile)
    short, long = base.seq_lens[0], base.seq_lens[-1]
    calibration = []
    for entry in profile.calibration:
        raw = base.raw_ms(ArchSpec.from_dict(entry["spec"]), entry["seq_len"])
        median = 1.3 * raw + 0.01 if entry["seq_len"] == short else raw
        calibration.append({**entry, "median_ms": median})
    fitted = LatencyPredictor(dataclasses.replace(profile, calibration=calibration))
    spec = ArchSpec("encoder", 50, 32, 24, (LayerSpec(2, 8, 40), LayerSpec(1, 8, 16)))
    assert fitted.predict_ms(spec, short) == pytest.approx(1.3 * base.raw_ms(spec, short) + 0.01, rel=1e-6)
    assert fitted.predict_ms(spec, long) == pytest.approx(base.raw_ms(spec, long), rel=1e-6)
    middle = (short + long) // 2
    w = (long - middle) / (long - short)
    want = w * (1.3 * base.raw_ms(spec, short) + 0.01) + (1 - w) * base.raw_ms(spec, long)
    assert fitted.predict_ms(spec, middle) == pytest.approx(want, rel=1e-6)
    assert fitted.calibration_at(short)[:3] == pytest.approx((1.3, 0.0, 0.01), rel=1e-6, abs=1e-9)


def test_models_smaller_than_the_calibration_never_predict_near_zero(profiled):
    """A fit with a negative offset (here 2x the composed blocks minus 1.5x the smallest calibrated model) would
    put a model smaller than every calibrated one at or below zero ms, which a search reads as meeting any budget;
    below the smallest calibrated model the prediction is proportional instead, through the fit there."""
    profile = profiled[1]
    base = LatencyPredictor(profile)
    t = base.seq_lens[0]
    tiny = ArchSpec("encoder", 50, 32, 16, (LayerSpec(1, 8, 16),))
    raw = base.raw_ms(tiny, t)
    # calibrated models no larger than `tiny` (the seeded sample may hold it, or one its noisy blocks compose
    # to no more than it) are left out, so that every calibrated model is larger
    larger = [e for e in profile.calibration if base.raw_ms(ArchSpec.from_dict(e["spec"]), t) > raw]
    assert len({json.dumps(e["spec"], sort_keys=True) for e in larger}) >= 2
    smallest = min(base.raw_ms(ArchSpec.from_dict(e["spec"]), t) for e in larger)
    calibration = [
        {**e, "median_ms": 2.0 * base.raw_ms(ArchSpec.from_dict(e["spec"]), e["seq_len"]) - 1.5 * smallest}
        for e in larger
    ]
    fitted = LatencyPredictor(dataclasses.replace(profile, calibration=calibration))
    assert raw < smallest  # the case this test is about
    assert 2.0 * raw - 1.5 * smallest < 0.5 * raw  # what the plain line would have said
    assert fitted.predict_ms(tiny, t) == pytest.approx(0.5 * raw, rel=1e-6)
    parts = fitted.breakdown_ms(tiny, t)
    assert sum(parts.values()) == pytest.approx(0.5 * raw, rel=1e-6) and min(parts.values()) > 0
    big = ArchSpec("encoder", 50, 32, 24, (LayerSpec(2, 8, 40), LayerSpec(2, 8, 40)))
    assert fitted.predict_ms(big, t) == pytest.approx(2.0 * base.raw_ms(big, t) - 1.5 * smallest, rel=1e-6)
