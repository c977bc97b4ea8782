"""The small decoder: BPE + from-scratch training lowers the loss; the result compiles and generates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canao.compiler.build import build
from canao.compiler.lower import lower_model
from canao.data.bundled import bundled_text_sample
from canao.models import load_pretrained
from canao.train.lm import PRESETS, train_language_model

TEST_PRESET = dict(vocab_size=512, max_positions=64, hidden=32, num_layers=2, heads=2, ffn=64)


def test_train_compile_generate(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "test", TEST_PRESET)
    result = train_language_model(bundled_text_sample(), tmp_path, preset="test", max_steps=25, batch_size=8, lr=3e-3)
    assert result.history[-1]["loss"] < result.history[0]["loss"] - 0.5
    loaded = load_pretrained(tmp_path / "model")
    assert loaded.task == "lm" and loaded.tokenizer.get_vocab_size() <= 512
    compiled = build(lower_model(loaded.model)).load()
    ids = loaded.tokenizer.encode("ROMEO:").ids
    logits = compiled.new_session().prefill(np.array(ids))
    with torch.no_grad():
        want = loaded.model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(logits - want).max() < 1e-4


@pytest.mark.slow
def test_beats_the_unigram_baseline(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "test", TEST_PRESET)
    result = train_language_model(bundled_text_sample(), tmp_path, preset="test", max_steps=150, batch_size=8, lr=3e-3)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert result.metrics["perplexity"] < summary["unigram_perplexity"]


def test_bundled_decoder_loads_compiles_and_generates():
    from canao.models.teacher import bundled_decoder_dir

    loaded = load_pretrained(bundled_decoder_dir())
    assert loaded.task == "lm" and loaded.spec.num_layers == 4
    compiled = build(lower_model(loaded.model)).load()
    ids = loaded.tokenizer.encode("ROMEO:").ids
    session = compiled.new_session()
    token = int(np.argmax(session.prefill(np.array(ids))[-1]))
    assert 0 <= token < loaded.spec.vocab_size
    with torch.no_grad():
        want = loaded.model(torch.tensor([ids + [token]])).logits[0, -1].numpy()
    assert np.abs(session.decode_step(token)[-1] - want).max() < 1e-4
