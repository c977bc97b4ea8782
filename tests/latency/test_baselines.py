"""FLOPs and roofline baselines on synthetic timings, and predicting/measuring with another device's profile."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from canao.arch import ArchSpec, LayerSpec
from canao.cli import app
from canao.latency.baselines import FittedFlops, Roofline, layer_bytes, layer_flops, measure_bandwidth_gbs
from canao.latency.device import executor_fingerprint, make_executor
from canao.latency.predictor import LatencyPredictor, measuring_executor, predict_and_measure
from canao.latency.profile import DeviceProfile, ProfileError, block_key

SPEC = ArchSpec("encoder", 50, 32, 16, (LayerSpec(2, 8, 40),))


def _calibrated(profile: DeviceProfile, ms_of_gflops) -> DeviceProfile:
    calibration = []
    for c in profile.calibration:
        spec = ArchSpec.from_dict(c["spec"])
        calibration.append({**c, "median_ms": ms_of_gflops(spec.flops(c["seq_len"]) / 1e9)})
    return dataclasses.replace(profile, calibration=calibration)


def test_fitted_flops_recovers_a_linear_law(profiled):
    profile = _calibrated(profiled[1], lambda g: 2.0 * g + 0.5)
    fit = FittedFlops.fit(profile)
    assert fit.ms_per_gflop == pytest.approx(2.0) and fit.offset_ms == pytest.approx(0.5)
    assert fit.predict_ms(SPEC, 16) == pytest.approx(2.0 * SPEC.flops(16) / 1e9 + 0.5)
    with pytest.raises(ValueError, match="at least 2 calibration"):
        FittedFlops.fit(dataclasses.replace(profile, calibration=profile.calibration[:1]))


def test_roofline_by_hand(profiled):
    t, h, a, f, heads = 16, 16, 16, 40, 2
    flops = 2.0 * (4 * t * h * a + 2 * t * t * a + 2 * t * h * f)
    assert layer_flops(h, SPEC.layers[0], t) == flops
    weights = (4 * h * a + 2 * h * f) * 4
    acts = t * (h + 6 * a + 2 * a + 5 * h + 2 * f) + 2 * t * t * heads
    assert layer_bytes(h, SPEC.layers[0], t, "fp32") == weights + 4 * acts
    roof = Roofline(gflops_per_s=10.0, gbytes_per_s=5.0)
    edges = (3 * t * h * 4 + (h * h + 2 * h) * 4) / 5e9 + 2 * h * h / 10e9
    want = (flops / 10e9 + (weights + 4 * acts) / 5e9 + edges) * 1e3
    assert roof.predict_ms(SPEC, t) == pytest.approx(want)
    # from a profile: the rate is the best any layer block reached
    profile = profiled[1]
    blocks = {k: {**e, "median_ms": 1.0} for k, e in profile.blocks.items()}
    fast = block_key("layer", 24, 16, 2, 40)
    blocks[fast] = {**blocks[fast], "median_ms": 1e-3}
    derived = Roofline.from_profile(dataclasses.replace(profile, blocks=blocks), 5.0)
    assert derived.gflops_per_s == pytest.approx(layer_flops(24, LayerSpec(2, 8, 40), 16) / 1e3)  # per 1 us
    assert measure_bandwidth_gbs(megabytes=8, repeats=2) > 0


def test_uncertainty_grows_with_spread(profiled):
    profile = profiled[1]
    wide = {k: {**e, "spread": 0.2} for k, e in profile.blocks.items()}
    calm = LatencyPredictor(dataclasses.replace(profile, blocks={k: {**e, "spread": 0.0} for k, e in wide.items()}))
    noisy = LatencyPredictor(dataclasses.replace(profile, blocks=wide))
    assert calm.uncertainty_ms(SPEC, 16) == pytest.approx(2 * calm.calibration_at(16)[3])  # 2x the fit's residual
    assert noisy.uncertainty_ms(SPEC, 16) > calm.uncertainty_ms(SPEC, 16)
    deeper = SPEC.replace(layers=SPEC.layers * 2)
    assert noisy.uncertainty_ms(deeper, 16) > noisy.uncertainty_ms(SPEC, 16)


@pytest.fixture
def remote_profile(profiled, tmp_path):
    """The test profile re-labelled as made through `nice -n 0 {cmd}`: a stand-in for `ssh phone {cmd}`."""
    local = make_executor("local")
    remote = make_executor("nice -n 0 {cmd}", simd=local.simd)
    data = json.loads(profiled[0].read_text())
    data["device"] = executor_fingerprint(remote)
    data["device_description"] = remote.description
    data["executor"] = {"name": remote.name, "template": remote.template, "simd": remote.simd, "compiler": None}
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(data))
    (tmp_path / "a.json").write_text(SPEC.to_json())
    return path


def test_another_devices_profile_predicts_and_measures_only_there(remote_profile, tmp_path):
    check = predict_and_measure(SPEC, remote_profile, 16, measure=False)
    assert check.predicted_ms > 0 and check.measured is None and "nice" in check.device
    with pytest.raises(ProfileError, match="pass --device with the template it was profiled with"):
        predict_and_measure(SPEC, remote_profile, 16)
    with pytest.raises(ProfileError, match="reaches device"):
        predict_and_measure(SPEC, remote_profile, 16, device="nice -n 1 {cmd}")
    measured = predict_and_measure(SPEC, remote_profile, 16, device="nice -n 0 {cmd}")
    assert measured.measured is not None and measured.measured.median_ms > 0
    profile = DeviceProfile.load(remote_profile)
    assert measuring_executor(profile, "nice -n 0 {cmd}").template == "nice -n 0 {cmd}"
    out = CliRunner().invoke(
        app,
        [
            "latency",
            "--arch",
            str(tmp_path / "a.json"),
            "--profile",
            str(remote_profile),
            "--seq-len",
            "16",
            "--no-measure",
        ],
    )
    assert out.exit_code == 0 and "predicted:" in out.output and "+-" in out.output, out.output
