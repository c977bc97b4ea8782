"""Evaluation with the compiled runtime: the same official metrics, read from the compiled model's outputs."""

from __future__ import annotations

import shutil

import pytest

from canao.data.bundled import SAMPLES_DIR
from canao.errors import SpecError
from canao.models import teacher_dir
from canao.train.evaluate import evaluate_checkpoint
from canao.train.finetune import FinetuneConfig, finetune
from tests.hf_factories import hf_bert

DEV, SQUAD = SAMPLES_DIR / "sst2-dev.tsv", SAMPLES_DIR / "squad-v1.1-dev-sample.json"


def _fine_tuned(tmp_path_factory, task: str, data, max_length: int):
    base = tmp_path_factory.mktemp(task) / "bert"
    hf_bert("BertModel", hidden=32, layers=2, heads=4, ffn=64, vocab=30522, positions=128).save_pretrained(base)
    shutil.copy(teacher_dir() / "tokenizer.json", base / "tokenizer.json")
    config = FinetuneConfig(
        task,
        base.parent / "run",
        epochs=1,
        batch_size=8,
        lr=1e-3,
        max_length=max_length,
        max_steps=4,
        save_every=4,
        warmup_ratio=0.0,
        doc_stride=32,
    )
    finetune(config, base, data)
    return base.parent / "run" / "model"


@pytest.fixture(scope="module")
def sst2_model(tmp_path_factory):
    return _fine_tuned(tmp_path_factory, "sst2", SAMPLES_DIR / "sst2-train-sample.tsv", 48)


@pytest.fixture(scope="module")
def squad_model(tmp_path_factory):
    return _fine_tuned(tmp_path_factory, "squad", SQUAD, 128)


def test_compiled_fp32_scores_like_pytorch_on_sst2(sst2_model):
    want, want_preds = evaluate_checkpoint(sst2_model, "sst2", DEV, max_length=48)
    got, got_preds = evaluate_checkpoint(sst2_model, "sst2", DEV, max_length=48, runtime="compiled")
    assert got == want and got_preds == want_preds and want["examples"] == 872
    bf16, bf16_preds = evaluate_checkpoint(sst2_model, "sst2", DEV, max_length=48, runtime="compiled", precision="bf16")
    agree = sum(a["prediction"] == b["prediction"] for a, b in zip(bf16_preds, want_preds))
    assert agree >= 0.97 * len(want_preds) and abs(bf16["accuracy"] - want["accuracy"]) < 2.0


def test_compiled_fp32_scores_like_pytorch_on_squad(squad_model):
    """Span logits of padded windows and positions come back aligned: identical answers, EM and F1."""
    want, want_answers = evaluate_checkpoint(squad_model, "squad", SQUAD, max_length=128, doc_stride=32)
    got, got_answers = evaluate_checkpoint(
        squad_model, "squad", SQUAD, max_length=128, doc_stride=32, runtime="compiled"
    )
    assert got_answers == want_answers and got == want


def test_unknown_runtime_is_refused(sst2_model):
    with pytest.raises(SpecError, match="runtime"):
        evaluate_checkpoint(sst2_model, "sst2", DEV, runtime="tflite")
