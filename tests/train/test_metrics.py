"""Metrics agree with hand-worked examples and the official SQuAD scripts' behaviour."""

from __future__ import annotations

import math

import pytest

from canao.train.metrics import (
    accuracy,
    binary_f1,
    exact_match,
    matthews_corrcoef,
    normalize_answer,
    perplexity,
    squad_scores,
    token_f1,
)


def test_official_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theory") == "theory"  # only whole-word articles go
    assert normalize_answer("  A ") == ""


def test_exact_match_and_f1_hand_worked():
    assert exact_match("the Broncos", "Broncos") == 1.0
    # pred tokens [denver, broncos, team], gold [broncos]: P=1/3, R=1, F1=0.5
    assert token_f1("Denver Broncos team", "the Broncos") == pytest.approx(0.5)
    # repeated tokens count with multiplicity: pred [a1 x2? no, 'go go'] vs gold 'go': P=1/2, R=1
    assert token_f1("go go", "go") == pytest.approx(2 / 3)
    assert token_f1("", "Broncos") == 0.0


def test_squad_scores_take_the_best_gold_and_count_missing_as_zero():
    gold = {"q1": ["Denver Broncos", "Broncos"], "q2": ["Santa Clara"], "q3": ["1978"]}
    preds = {"q1": "broncos", "q2": "Santa Clara, California"}
    scores = squad_scores(preds, gold)
    assert scores["total"] == 3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 * (1 * 2 / 3) / (1 + 2 / 3)) / 3)


def test_squad_v2_no_answer():
    gold = {"q1": [], "q2": ["Paris"]}
    assert squad_scores({"q1": "", "q2": "Paris"}, gold)["exact_match"] == 100.0
    assert squad_scores({"q1": "something", "q2": ""}, gold) == {"exact_match": 0.0, "f1": 0.0, "total": 2}


def test_classification_metrics():
    preds, labels = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    assert accuracy(preds, labels) == pytest.approx(4 / 6)
    assert binary_f1(preds, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # tp=2 tn=2 fp=1 fn=1 -> (4-1)/sqrt(3*3*3*3) = 1/3
    assert matthews_corrcoef(preds, labels) == pytest.approx(1 / 3)
    assert matthews_corrcoef([1, 1], [0, 1]) == 0.0  # an empty confusion row: 0, as sklearn
    with pytest.raises(ValueError, match="same length"):
        accuracy([1], [1, 0])


def test_perplexity():
    assert perplexity(4 * math.log(10), 4) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        perplexity(1.0, 0)
