"""SQuAD files: gzip-compressed input, and answers whose offsets do not match their text."""

from __future__ import annotations

import gzip
import json

import pytest

from canao.data.bundled import bundled_squad_sample
from canao.data.squad import AnchorReport, read_squad
from canao.errors import DataError


def test_gzip_file_reads_like_the_plain_one(tmp_path):
    plain = bundled_squad_sample()
    packed = tmp_path / "dev.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_squad(packed) == read_squad(plain)


def test_damaged_gzip_is_a_clear_error(tmp_path):
    packed = tmp_path / "dev.json.gz"
    packed.write_bytes(gzip.compress(bundled_squad_sample().read_bytes())[:-400])
    with pytest.raises(DataError, match="dev.json.gz: the gzip stream is truncated or damaged"):
        read_squad(packed)
    packed.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="dev.json.gz"):
        read_squad(packed)


def test_answers_off_their_offsets_are_re_anchored_or_skipped(tmp_path, caplog):
    context = "Rollo led the Normans. The Normans settled in Normandy. Rollo was their leader."
    qas = [
        {"id": "ok", "question": "Who?", "answers": [{"text": "Rollo", "answer_start": 0}]},
        # "Normans" is at 14 and 27; the offset 25 is wrong: the nearest occurrence (27) wins.
        {"id": "moved", "question": "Who settled?", "answers": [{"text": "Normans", "answer_start": 25}]},
        {
            "id": "mixed",
            "question": "Where?",
            "answers": [{"text": "Normandy", "answer_start": 0}, {"text": "Paris", "answer_start": 5}],
        },
        {"id": "gone", "question": "What?", "answers": [{"text": "Vikings", "answer_start": 3}]},
    ]
    path = tmp_path / "squad.json"
    path.write_text(
        json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]})
    )
    report = AnchorReport()
    with caplog.at_level("WARNING"):
        (article,) = read_squad(path, report)
    questions = {q.id: q for q in article.paragraphs[0].questions}
    assert set(questions) == {"ok", "moved", "mixed"}  # "gone" has no usable answer
    assert questions["moved"].answers[0].start == 27 == context.index("Normans", 15)
    assert [(a.text, a.start) for a in questions["mixed"].answers] == [("Normandy", context.index("Normandy"))]
    for q in questions.values():
        for a in q.answers:
            assert context[a.start : a.start + len(a.text)] == a.text
    assert (report.answers, report.re_anchored, report.skipped, report.questions_dropped) == (5, 2, 2, 1)
    assert "2 re-anchored" in caplog.text and "2 skipped" in caplog.text
