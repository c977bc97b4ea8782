"""Tokenizers load from tokenizer.json, vocab.txt or vocab.json + merges.txt."""

from __future__ import annotations

import json
import shutil

import pytest

from canao.errors import CheckpointError
from canao.models import load_tokenizer, teacher_dir


def test_tokenizer_json_has_padding_disabled():
    tok = load_tokenizer(teacher_dir())
    assert tok.padding is None and tok.truncation is None
    assert tok.encode("Hello World").ids == [101, 7592, 2088, 102]


def test_vocab_txt_wordpiece_matches_tokenizer_json(tmp_path):
    shutil.copy(teacher_dir() / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    text = "Compiler-aware NAS runs BERT in real time!"
    assert load_tokenizer(tmp_path).encode(text).ids == load_tokenizer(teacher_dir()).encode(text).ids


def test_byte_level_bpe_from_vocab_and_merges(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, vocab_size=300, min_frequency=1)
    trainer.save_model(str(tmp_path))
    tok = load_tokenizer(tmp_path)
    ids = tok.encode("the lazy fox").ids
    assert tok.decode(ids) == "the lazy fox"


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer found"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="tokenizer.json: cannot be read"):
        load_tokenizer(tmp_path)
