"""A tiny fine-tuned teacher, its search space, and a synthetic device profile for search tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canao.arch import SearchSpace
from canao.latency.profile import DeviceProfile, ProfileConfig, _grid, block_key
from tests.hf_factories import save_tiny_bert_with_tokenizer

# hidden 32, 4 heads of 8, FFN 64, 2 layers: the teacher; every member of TINY_ARCH slices it
TINY_ARCH = SearchSpace("encoder", 30522, 128, (16, 32), (1, 2), (2, 4), 8, (32, 64))


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return save_tiny_bert_with_tokenizer(tmp_path_factory.mktemp("teacher") / "bert", "BertForSequenceClassification")


def synthetic_profile(space: SearchSpace, seq_lens: tuple[int, ...], precision: str, path: Path) -> Path:
    """A device profile whose block latencies follow FLOPs (no compiling): enough to drive the search."""
    config = ProfileConfig(space, seq_lens=seq_lens, precision=precision)
    speed = 0.5 if precision == "int8" else 1.0
    blocks = {}
    for block, h, heads, ffn, t in _grid(config):
        flops = {"embed": t * h, "head": h * h, "layer": t * h * (4 * heads * space.head_dim + 2 * ffn)}[block]
        ms = speed * (0.01 + flops / 2e6)
        blocks[block_key(block, h, t, heads, ffn)] = {"sweeps": [], "median_ms": ms}
    cfg = {
        "space": json.loads(space.to_json()),
        "seq_lens": list(seq_lens),
        "threads": 2,
        "warmup": 1,
        "reps": 5,
        "calibration_models": 0,
        "passes": 1,
        "seed": 0,
        "precision": precision,
    }
    DeviceProfile("synthetic-device", "a synthetic profile for tests", {}, cfg, blocks, []).save(path)
    return path
