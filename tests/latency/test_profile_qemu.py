"""The profiler runs through a device template: the aarch64 NEON build under qemu-user."""

from __future__ import annotations

import shutil

import pytest

from canao.arch import SearchSpace
from canao.latency.device import make_executor
from canao.latency.predictor import LatencyPredictor
from canao.latency.profile import DeviceProfile, ProfileConfig, profile_device

pytestmark = pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
    reason="needs gcc-aarch64-linux-gnu and qemu-user (installed by .ci/run)",
)


def test_qemu_profile_round_trip(tmp_path):
    space = SearchSpace("encoder", 40, 16, (16,), (1, 2), (2,), 8, (16,))
    config = ProfileConfig(space, seq_lens=(4,), warmup=1, reps=3, calibration_models=2)
    executor = make_executor("qemu-aarch64")
    profile = profile_device(config, executor, tmp_path / "phone.json")
    assert profile.device.startswith("qemu-aarch64-neon-") and len(profile.blocks) == 3
    loaded = DeviceProfile.load(tmp_path / "phone.json", device=profile.device)
    assert LatencyPredictor(loaded).predict_ms(space.largest(), 4) > 0
