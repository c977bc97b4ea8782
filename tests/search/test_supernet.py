"""The supernet phase on a tiny teacher: the sandwich trains shared weights, resumes exactly, members score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from canao.arch import SearchSpace
from canao.data.bundled import SAMPLES_DIR
from canao.errors import SpecError
from canao.models import load_pretrained
from canao.search.candidates import CandidateSpace
from canao.search.supernet import (
    HiddenProjections,
    SandwichLoss,
    SupernetConfig,
    inherited_accuracy,
    load_supernet,
    train_supernet,
)
from canao.train.finetune import FinetuneConfig
from canao.train.tasks import get_task
from tests.interrupt import Interrupted, interrupt_at
from tests.search.conftest import TINY_ARCH

TRAIN, DEV = SAMPLES_DIR / "sst2-train-sample.tsv", SAMPLES_DIR / "sst2-dev.tsv"
# hidden 32, 4 heads of 8, FFN 64, 2 layers: the teacher; members slice it
SPACE = CandidateSpace(TINY_ARCH, seq_lens=(64,))


def _config(out, focus_ms=None, hidden_weight=1.0, **kw):
    base = dict(epochs=1, batch_size=8, lr=1e-3, max_length=48, max_steps=6, save_every=2, warmup_ratio=0.0)
    base.update(kw)
    return SupernetConfig(
        FinetuneConfig("sst2", out, **base), random_subnets=2, focus_ms=focus_ms, hidden_weight=hidden_weight
    )


def _all_decisions():
    return itertools.product(*(range(c) for c in SPACE.choice_counts()))


def test_supernet_trains_resumes_exactly_and_scores_members(tmp_path, tiny_teacher):
    straight = train_supernet(_config(tmp_path / "a"), SPACE, tiny_teacher, TRAIN)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in straight.history)

    crash = interrupt_at(4)

    with pytest.raises(Interrupted):
        train_supernet(_config(tmp_path / "b"), SPACE, tiny_teacher, TRAIN, progress=crash)
    with pytest.raises(SpecError, match=r"hidden_weight 1\.0 -> 0\.0"):  # a sandwich setting, saved in the run
        train_supernet(_config(tmp_path / "b", hidden_weight=0.0), SPACE, tiny_teacher, TRAIN)
    resumed = train_supernet(_config(tmp_path / "b"), SPACE, tiny_teacher, TRAIN)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)

    supernet = load_supernet(tmp_path / "a")
    trained, original = supernet.model.state_dict(), load_pretrained(tiny_teacher).model.state_dict()
    assert any(not torch.equal(trained[k], original[k]) for k in trained)  # the shared weights moved
    dev = get_task("sst2").load(DEV, supernet.tokenizer, max_length=48)
    for candidate in (SPACE.smallest(), SPACE.decode((1, 1, 1, 1, 0, 1, 0, 0))):
        acc = inherited_accuracy(supernet.model, "sst2", candidate.spec, dev)
        assert 0.0 <= acc <= 100.0


def test_a_space_larger_than_the_teacher_is_refused(tmp_path, tiny_teacher):
    too_wide = CandidateSpace(SearchSpace("encoder", 30522, 128, (16, 64), (1, 2), (2, 4), 8, (32, 64)), seq_lens=(64,))
    with pytest.raises(SpecError, match="not a slice of the teacher"):
        train_supernet(_config(tmp_path / "w"), too_wide, tiny_teacher, TRAIN)


def test_budget_aware_sampling_draws_random_members_within_the_focus(tmp_path, tiny_teacher):
    teacher = load_pretrained(tiny_teacher).model
    params = lambda spec: spec.flops(64) / 1e6  # noqa: E731 - a stand-in latency: monotone in size
    sizes = sorted(params(SPACE.decode(d).spec) for d in _all_decisions())
    focus = float(sizes[len(sizes) // 3])  # about a third of the members qualify
    loss = SandwichLoss(teacher, teacher, SPACE, _config(tmp_path, focus_ms=focus), latency=params)
    torch.manual_seed(0)
    sandwiches = [loss.members() for _ in range(30)]
    assert all(m[0] == SPACE.smallest().spec and len(m) == 3 for m in sandwiches)  # the largest is out of focus
    drawn = [spec for m in sandwiches for spec in m[1:]]
    assert all(params(spec) <= focus for spec in drawn)
    assert len({spec.to_json() for spec in drawn}) > 1  # still random within the focus
    uniform = SandwichLoss(teacher, teacher, SPACE, _config(tmp_path))
    assert all(m[0] == SPACE.arch.largest() for m in (uniform.members() for _ in range(5)))
    assert any(params(spec) > focus for _ in range(30) for spec in uniform.members()[2:])
    with pytest.raises(SpecError, match="needs the latency model"):
        SandwichLoss(teacher, teacher, SPACE, _config(tmp_path, focus_ms=focus))


def test_hidden_projections_start_as_the_identity_on_leading_dimensions():
    maps = HiddenProjections((16, 32), 32)
    x = torch.randn(2, 3, 16)
    out = maps(x)
    assert out.shape == (2, 3, 32)
    assert torch.equal(out[..., :16], x) and not out[..., 16:].any()
    y = torch.randn(2, 3, 32)
    assert torch.equal(maps(y), y)


def test_the_hidden_state_term_trains_the_members_last_layer(tmp_path, tiny_teacher):
    """With hidden_weight the loss holds the MSE of the last hidden state: larger than the logits-only loss
    for a member whose output differs from the teacher's, and its gradient reaches the projections."""
    teacher = load_pretrained(tiny_teacher).model
    task = get_task("sst2")
    data = task.load(TRAIN, load_pretrained(tiny_teacher).tokenizer, max_length=48)
    batch = task.collate(data, np.arange(8))
    with_hidden = SandwichLoss(teacher, teacher, SPACE, _config(tmp_path, hidden_weight=1.0))
    logits_only = SandwichLoss(teacher, teacher, SPACE, _config(tmp_path, hidden_weight=0.0))
    smallest = SPACE.smallest().spec
    with_hidden.members = logits_only.members = lambda: [smallest]  # type: ignore[method-assign]
    teacher.eval()
    a, b = with_hidden(batch), logits_only(batch)
    assert a.item() > b.item()
    a.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in with_hidden.projections.parameters())
