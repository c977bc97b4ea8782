"""Test-wide settings: offline hub, 2 threads, deterministic seeds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory) -> None:
    """Compiled libraries, tuning and the signing key go to per-run places, not the user's ~/.cache or ~/.config."""
    os.environ["CANAO_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernel-cache"))
    os.environ["CANAO_TUNING_DB"] = str(tmp_path_factory.mktemp("tuning") / "tuning-db.json")
    os.environ["CANAO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("config"))  # the build-signing key
