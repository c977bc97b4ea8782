"""Length-bucketed batches: every example once per epoch, seeded and resumable, far less padding."""

from __future__ import annotations

import json
import math

import numpy as np

from canao.train.finetune import FinetuneConfig, _micro_batches, _saved_identity


def _config(tmp_path, buckets: int) -> FinetuneConfig:
    return FinetuneConfig("squad", tmp_path, batch_size=8, grad_accum=2, length_buckets=buckets, seed=3)


def _epoch(config: FinetuneConfig, n: int, epoch: int, lengths: np.ndarray) -> list[list[np.ndarray]]:
    per_epoch = math.ceil(n / (config.batch_size * config.grad_accum))
    return [_micro_batches(config, n, epoch * per_epoch + s, lengths) for s in range(per_epoch)]


def test_each_epoch_covers_every_example_once_with_less_padding(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 385, size=1000)
    for buckets in (0, 10):
        config = _config(tmp_path, buckets)
        steps = _epoch(config, 1000, 1, lengths)
        seen = np.concatenate([b for micro in steps for b in micro])
        assert sorted(seen.tolist()) == list(range(1000))
        assert all(len(b) <= 8 for micro in steps for b in micro)
    padded = {
        buckets: sum(
            len(b) * lengths[b].max() for micro in _epoch(_config(tmp_path, buckets), 1000, 0, lengths) for b in micro
        )
        for buckets in (0, 10)
    }
    assert padded[10] < 0.7 * padded[0]  # uniform lengths 40-384: bucketing removes most padding
    assert padded[10] < 1.1 * lengths.sum()  # within 10% of no padding at all


def test_order_depends_only_on_seed_and_step(tmp_path):
    lengths = np.random.default_rng(1).integers(10, 100, size=300)
    config = _config(tmp_path, 5)
    first = [_micro_batches(config, 300, s, lengths) for s in range(40)]
    again = [_micro_batches(config, 300, s, lengths) for s in reversed(range(40))][::-1]
    for a, b in zip(first, again):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other_epoch = _epoch(config, 300, 1, lengths)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(_epoch(config, 300, 0, lengths), other_epoch))


def test_runs_saved_before_the_setting_existed_still_resume(tmp_path):
    config = _config(tmp_path, 0)
    saved = json.loads(config.to_json())
    saved.pop("length_buckets")
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    assert _saved_identity(tmp_path / "train_config.json") == config.identity()


def test_batches_are_padded_to_few_widths_never_past_max_length():
    """Rounded widths keep oneDNN's per-shape kernel cache small (it grew to 24 GB on full SQuAD otherwise)."""
    import torch

    from canao.train.tasks import ClassificationTask, TaskData, padded_width

    assert [padded_width(n) for n in (1, 8, 9, 128, 129, 383, 384)] == [8, 8, 16, 128, 160, 384, 384]
    assert len({padded_width(n) for n in range(1, 385)}) == 16 + 8
    rows = [((101, 7, 102), (0, 0, 0)), ((101, 7, 8, 9, 102), (0, 0, 0, 0, 0))]
    task = ClassificationTask("sst2")
    batch = task.collate(TaskData(rows, [None, None], [0, 1], max_width=6), np.arange(2))
    assert batch["input_ids"].shape == (2, 6)  # 5 tokens would round to 8; max_length 6 caps it
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]
    wide = task.collate(TaskData(rows, [None, None], [0, 1], max_width=128), np.arange(2))
    assert wide["input_ids"].shape == (2, 8) and torch.equal(wide["input_ids"][:, :6], batch["input_ids"])
