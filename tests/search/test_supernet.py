"""The supernet phase on a tiny teacher: the sandwich trains shared weights, resumes exactly, members score."""

from __future__ import annotations

import pytest
import torch

from canao.arch import SearchSpace
from canao.data.bundled import SAMPLES_DIR
from canao.errors import SpecError
from canao.models import load_pretrained
from canao.search.candidates import CandidateSpace
from canao.search.supernet import SupernetConfig, inherited_accuracy, load_supernet, train_supernet
from canao.train.finetune import FinetuneConfig
from canao.train.tasks import get_task
from tests.search.conftest import TINY_ARCH

TRAIN, DEV = SAMPLES_DIR / "sst2-train-sample.tsv", SAMPLES_DIR / "sst2-dev.tsv"
# hidden 32, 4 heads of 8, FFN 64, 2 layers: the teacher; members slice it
SPACE = CandidateSpace(TINY_ARCH, seq_lens=(64,))


def _config(out, **kw):
    base = dict(epochs=1, batch_size=8, lr=1e-3, max_length=48, max_steps=6, save_every=2, warmup_ratio=0.0)
    base.update(kw)
    return SupernetConfig(FinetuneConfig("sst2", out, **base), random_subnets=2)


def test_supernet_trains_resumes_exactly_and_scores_members(tmp_path, tiny_teacher):
    straight = train_supernet(_config(tmp_path / "a"), SPACE, tiny_teacher, TRAIN)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in straight.history)

    class Stop(Exception):
        pass

    def crash(step, total, loss):
        if step == 4:
            raise Stop()

    with pytest.raises(Stop):
        train_supernet(_config(tmp_path / "b"), SPACE, tiny_teacher, TRAIN, progress=crash)
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
