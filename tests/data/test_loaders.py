"""Loaders on the bundled subsets and on malformed files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from canao.data.bundled import SAMPLES_DIR, bundled_squad_sample, bundled_text_sample
from canao.data.glue import read_glue
from canao.data.squad import best_answers, qa_examples, qa_features, read_squad
from canao.data.text import pack_blocks, read_text
from canao.errors import DataError
from canao.models import load_tokenizer, teacher_dir
from canao.train.metrics import squad_scores


def test_glue_bundled_files():
    train = read_glue("sst2", SAMPLES_DIR / "sst2-train-sample.tsv")
    dev = read_glue("sst2", SAMPLES_DIR / "sst2-dev.tsv")
    assert len(train) == 2000 and len(dev) == 872 and {e.label for e in dev} == {0, 1}
    assert sum(e.label for e in dev) == 444  # as GLUE's SST-2 dev
    qnli = read_glue("qnli", SAMPLES_DIR / "qnli-dev-sample.tsv")
    assert len(qnli) == 300 and qnli[0].text_b and qnli[0].label == 0  # entailment -> 0


def test_mrpc_format_with_bom_and_quotes(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "yes.\tHe agreed.\n0\t3\t4\tRain today.\tThe market fell.\n',
        encoding="utf-8",
    )
    rows = read_glue("mrpc", path)
    assert [(r.text_a, r.text_b, r.label) for r in rows] == [
        ('He said "yes.', "He agreed.", 1),
        ("Rain today.", "The market fell.", 0),
    ]


def test_malformed_tsv_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood movie\t1\nbroken line without label\n")
    with pytest.raises(DataError, match=r"train.tsv:3: 1 tab-separated fields"):
        read_glue("sst2", path)
    path.write_text("sentence\tlabel\ngood\t7\n")
    with pytest.raises(DataError, match=r"train.tsv:2: label '7'"):
        read_glue("sst2", path)
    path.write_text("text\tlabel\n")
    with pytest.raises(DataError, match="lacks column"):
        read_glue("sst2", path)


def test_malformed_squad(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n{"title": "x",\n "paragraphs": [}]}')
    with pytest.raises(DataError, match=r"bad.json: not valid JSON at line 3"):
        read_squad(path)
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]}))
    with pytest.raises(DataError, match=r"qas\[0\].*id"):
        read_squad(path)


def test_squad_windows_recover_gold_answers():
    tok = load_tokenizer(teacher_dir())
    examples = qa_examples(read_squad(bundled_squad_sample()))
    features = qa_features(examples, tok, max_length=96, doc_stride=32)
    assert len(features) > len(examples)  # long contexts are split into windows
    assert all(len(f.input_ids) <= 96 for f in features)
    starts, ends = [], []
    for f in features:  # oracle logits on the labelled positions
        s, e = np.zeros(len(f.input_ids)), np.zeros(len(f.input_ids))
        if f.start_position:
            s[f.start_position], e[f.end_position] = 10, 10
        starts.append(s)
        ends.append(e)
    scores = squad_scores(best_answers(examples, features, starts, ends), {e.id: e.answers for e in examples})
    assert scores["exact_match"] > 97  # the few misses are answers that tokenisation cannot isolate


def test_text_blocks():
    tok = load_tokenizer(teacher_dir())
    blocks = pack_blocks(tok.encode(read_text(bundled_text_sample())[:2000]).ids, 32)
    assert blocks.shape[1] == 33 and blocks.dtype == np.int64
    with pytest.raises(DataError, match="too few"):
        pack_blocks([1, 2, 3], 8)
