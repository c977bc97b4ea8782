"""A tiny device profile measured once per test module (local executor), shared by the latency tests."""

from __future__ import annotations

import pytest

from canao.arch import SearchSpace
from canao.latency.device import make_executor
from canao.latency.profile import ProfileConfig, profile_device

SPACE = SearchSpace("encoder", 50, 32, (16, 24), (1, 2), (1, 2), 8, (16, 40))
# agree_tol 10: microsecond blocks always "disagree"; re-measurement is tested on synthetic timings instead
CONFIG = ProfileConfig(
    SPACE, seq_lens=(8, 16), warmup=1, reps=5, calibration_models=3, passes=2, reference_every=8, agree_tol=10.0
)


@pytest.fixture(scope="session")
def profiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "p.json"
    profile = profile_device(CONFIG, make_executor("local"), path)
    return path, profile
