"""Device profiles: measured, saved, resumed, refused when corrupt or foreign (the predictor: test_predictor.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from canao.arch import ArchSpec, LayerSpec
from canao.compiler.codegen import kernel_digest
from canao.latency.device import make_executor
from canao.latency.predictor import LatencyPredictor
from canao.latency.profile import (
    DeviceProfile,
    ProfileError,
    default_profile_path,
    drift_factor,
    profile_device,
    settle,
    synthetic_weights,
)
from canao.models import build_model
from tests.latency.conftest import CONFIG, SPACE


def test_profile_round_trips(profiled):
    path, profile = profiled
    assert len(profile.blocks) == 2 * 2 * (2 + 4) and len(profile.calibration) == 3 * 2
    again = DeviceProfile.load(path, device=profile.device)
    assert again == profile
    factor = drift_factor(profile.reference)
    ats = [r["at"] for r in profile.reference]
    assert ats == sorted(ats) and len(ats) >= profile.clock // (CONFIG.reference_every + 1)
    for entry in list(profile.blocks.values()) + profile.calibration:
        assert len(entry["sweeps"]) == 2 and entry == settle(entry, factor)
        assert entry["raw_ms"] == min(t["median_ms"] for t in entry["sweeps"])
        assert all(t["kept"] + t["rejected"] == 5 and ats[0] < t["at"] < ats[-1] for t in entry["sweeps"])


def test_corrupt_and_foreign_profiles_are_refused(profiled, tmp_path):
    path, profile = profiled
    bad = tmp_path / "bad.json"
    bad.write_text(path.read_text()[:100])
    with pytest.raises(ProfileError, match="corrupt"):
        DeviceProfile.load(bad)
    with pytest.raises(ProfileError, match="not on this one"):
        DeviceProfile.load(path, device="aarch64-neon-000000000000")
    data = json.loads(path.read_text())
    data["version"] = 99
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="version 99"):
        DeviceProfile.load(bad)
    with pytest.raises(ProfileError, match="no such profile"):
        DeviceProfile.load(tmp_path / "missing.json")


def test_interrupted_profile_resumes(profiled, tmp_path):
    path, profile = profiled
    partial = tmp_path / "partial.json"
    shutil.copy(path, partial)
    data = json.loads(partial.read_text())
    dropped = sorted(data["blocks"])[:3]
    for key in dropped:
        del data["blocks"][key]
    second_sweep_cut = sorted(data["blocks"])[5]
    data["blocks"][second_sweep_cut]["sweeps"] = data["blocks"][second_sweep_cut]["sweeps"][:1]
    data["calibration"] = data["calibration"][:4]
    partial.write_text(json.dumps(data))
    measured = []
    resumed = profile_device(CONFIG, make_executor("local"), partial, lambda key, done, total: measured.append(key))
    blocks = [k for k in measured if not k.startswith("calibration")]
    assert sorted(blocks) == sorted(dropped * 2 + [second_sweep_cut])  # dropped: both sweeps; cut: its second
    assert len(measured) - len(blocks) == 2 * 2  # the two missing calibration points, in both sweeps
    assert set(resumed.blocks) == set(profile.blocks) and len(resumed.calibration) == 6
    assert all(len(e["sweeps"]) == 2 for e in list(resumed.blocks.values()) + resumed.calibration)


def test_synthetic_weights_match_the_reference_model():
    spec = ArchSpec("encoder", 50, 32, 16, (LayerSpec(2, 8, 16), LayerSpec(1, 8, 40)))
    ours = synthetic_weights(spec, np.random.default_rng(0))
    want = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
    assert {k: v.shape for k, v in ours.items()} == want
    dec = spec.replace(kind="decoder", type_vocab_size=None, norm_eps=None, activation=None)
    want = {k: tuple(v.shape) for k, v in build_model(dec, "lm").state_dict().items()}
    assert {k: v.shape for k, v in synthetic_weights(dec, np.random.default_rng(0)).items()} == want


def test_profiles_are_per_precision(profiled, tmp_path):
    path, profile = profiled
    assert profile.precision == "fp32"
    with pytest.raises(ProfileError, match="other settings"):  # an fp32 profile is not resumed as int8
        profile_device(dataclasses.replace(CONFIG, precision="int8"), make_executor("local"), path)
    legacy = tmp_path / "legacy.json"  # written before profiles had a precision: fp32, and resumable as such
    data = json.loads(path.read_text())
    del data["config"]["precision"]
    legacy.write_text(json.dumps(data))
    assert DeviceProfile.load(legacy).precision == "fp32"
    assert profile_device(CONFIG, make_executor("local"), legacy).blocks == profile.blocks
    small = dataclasses.replace(CONFIG, seq_lens=(8,), calibration_models=1, passes=1, precision="int8")
    int8 = profile_device(small, make_executor("local"), tmp_path / "int8.json")
    assert int8.precision == "int8" and LatencyPredictor(int8).predict_ms(SPACE.largest(), 8) > 0


def test_profiles_of_other_kernels_are_flagged_never_resumed(profiled, tmp_path, monkeypatch):
    path, profile = profiled
    assert profile.config["kernels"] == kernel_digest() and profile.current_kernels
    old = tmp_path / "old.json"
    data = json.loads(path.read_text())
    data["config"]["kernels"] = "0" * 12  # as another canao version wrote it
    old.write_text(json.dumps(data))
    assert not DeviceProfile.load(old).current_kernels  # still loads: predicting from it is the user's call
    with pytest.raises(ProfileError, match="other compiled kernels"):  # but new timings are never mixed in
        profile_device(CONFIG, make_executor("local"), old)
    today = default_profile_path(CONFIG)
    monkeypatch.setattr("canao.latency.profile.kernel_digest", lambda: "f" * 12)
    assert default_profile_path(CONFIG) != today  # the cached profile of other kernels is not picked up
