"""Fine-tuning and distillation on tiny configs: the loss goes down, resume is exact, mismatches are refused."""

from __future__ import annotations

import shutil

import pytest
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.data.bundled import SAMPLES_DIR
from canao.errors import SpecError
from canao.models import load_pretrained, teacher_dir
from canao.train.distill import DistillConfig, distill, layer_map
from canao.train.finetune import FinetuneConfig, finetune
from tests.hf_factories import hf_bert, hf_gpt2

TRAIN, DEV = SAMPLES_DIR / "sst2-train-sample.tsv", SAMPLES_DIR / "sst2-dev.tsv"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "bert"
    hf_bert("BertModel", hidden=32, layers=2, heads=4, ffn=64, vocab=30522, positions=128).save_pretrained(path)
    shutil.copy(teacher_dir() / "tokenizer.json", path / "tokenizer.json")
    return path


def _config(out, **kw):
    base = dict(epochs=1, batch_size=16, lr=2e-3, max_length=48, max_steps=12, save_every=3, warmup_ratio=0.0)
    base.update(kw)
    return FinetuneConfig("sst2", out, **base)


def test_finetune_lowers_the_loss_and_saves_a_loadable_model(tmp_path, tiny_bert):
    result = finetune(_config(tmp_path / "run"), tiny_bert, TRAIN)
    first, last = result.history[0]["loss"], sum(h["loss"] for h in result.history[-3:]) / 3
    assert last < first
    loaded = load_pretrained(tmp_path / "run" / "model")
    assert loaded.task == "classification" and loaded.tokenizer is not None


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_bert):
    straight = finetune(_config(tmp_path / "a"), tiny_bert, TRAIN)

    class Stop(Exception):
        pass

    def crash(step, total, loss):
        if step == 7:
            raise Stop()

    with pytest.raises(Stop):
        finetune(_config(tmp_path / "b"), tiny_bert, TRAIN, progress=crash)
    resumed = finetune(_config(tmp_path / "b"), tiny_bert, TRAIN)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    a = load_pretrained(tmp_path / "a" / "model").model.state_dict()
    b = load_pretrained(tmp_path / "b" / "model").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_changed_settings_do_not_resume(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "c", max_steps=3), tiny_bert, TRAIN)
    with pytest.raises(SpecError, match="other settings"):
        finetune(_config(tmp_path / "c", max_steps=3, lr=1e-2), tiny_bert, TRAIN)


def test_distill_step_lowers_the_loss(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=6), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))  # a slice of the teacher
    config = DistillConfig(_config(tmp_path / "student", max_steps=10))
    result = distill(config, tmp_path / "teacher" / "model", student, TRAIN, DEV)
    assert sum(h["loss"] for h in result.history[-3:]) / 3 < result.history[0]["loss"]
    assert "accuracy" in result.metrics
    assert load_pretrained(tmp_path / "student" / "model").spec == student


def test_distill_to_a_wider_non_slice_student(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=2), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 40, (LayerSpec(5, 8, 16),) * 3)  # wider and deeper: random init
    result = distill(DistillConfig(_config(tmp_path / "s2", max_steps=3)), tmp_path / "teacher" / "model", student, TRAIN)
    assert result.steps == 3


def test_layer_map():
    assert layer_map(4, 12) == [0, 3, 6, 9, 12]
    assert layer_map(3, 6) == [0, 2, 4, 6]


def test_task_teacher_mismatch_is_refused(tmp_path, tiny_bert):
    gpt = tmp_path / "gpt"
    hf_gpt2(hidden=16, layers=1, heads=2).save_pretrained(gpt)
    shutil.copy(teacher_dir() / "tokenizer.json", gpt / "tokenizer.json")
    with pytest.raises(SpecError, match="cannot serve task sst2"):
        finetune(_config(tmp_path / "x"), gpt, TRAIN)
    small_vocab = tmp_path / "small"
    hf_bert("BertModel", hidden=16, layers=1, heads=2, ffn=16, vocab=100).save_pretrained(small_vocab)
    shutil.copy(teacher_dir() / "tokenizer.json", small_vocab / "tokenizer.json")
    with pytest.raises(SpecError, match="vocab_size"):
        finetune(_config(tmp_path / "y"), small_vocab, TRAIN)
    with pytest.raises(SpecError, match="vocab_size"):
        distill(DistillConfig(_config(tmp_path / "z")), tiny_bert,
                ArchSpec("encoder", 100, 128, 16, (LayerSpec(2, 8, 16),)), TRAIN)
