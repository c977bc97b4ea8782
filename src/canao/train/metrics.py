"""Task metrics, exactly as the official scripts compute them.

SQuAD: answers are normalised the way the official evaluate-v1.1/v2.0 scripts
do (lower case, punctuation removed, the articles a/an/the removed, white
space collapsed); exact match and token F1 take the maximum over the gold
answers; in v2.0 an unanswerable question's gold answer is the empty string,
so only an empty prediction scores (EM = F1 = 1). GLUE: accuracy, binary F1
(positive class 1) and Matthews correlation. Language modelling: perplexity
= exp(mean token negative log-likelihood).

Example::

    squad_scores({"q1": "Denver Broncos"}, {"q1": ["Denver Broncos", "the Broncos"]})
    # {'exact_match': 100.0, 'f1': 100.0, 'total': 1}
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop articles, collapse white space (official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:  # v2.0: no-answer scores 1 only against no-answer
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 in percent over every gold question (a missing prediction scores 0).

    `gold` maps question id to its gold answer texts; an empty list means
    unanswerable (SQuAD v2.0) and is scored against the empty string."""
    em = f1 = 0.0
    for qid, answers in gold.items():
        answers = list(answers) or [""]
        if qid not in predictions:
            continue
        pred = predictions[qid]
        em += max(exact_match(pred, a) for a in answers)
        f1 += max(token_f1(pred, a) for a in answers)
    total = len(gold)
    return {"exact_match": 100.0 * em / max(total, 1), "f1": 100.0 * f1 / max(total, 1), "total": total}


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    _same_length(predictions, labels)
    return sum(int(p == y) for p, y in zip(predictions, labels)) / max(len(labels), 1)


def binary_f1(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    _same_length(predictions, labels)
    tp = sum(1 for p, y in zip(predictions, labels) if p == positive and y == positive)
    fp = sum(1 for p, y in zip(predictions, labels) if p == positive and y != positive)
    fn = sum(1 for p, y in zip(predictions, labels) if p != positive and y == positive)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Binary Matthews correlation; 0 when a row or column of the confusion matrix is empty (sklearn's rule)."""
    _same_length(predictions, labels)
    tp = sum(1 for p, y in zip(predictions, labels) if p == 1 and y == 1)
    tn = sum(1 for p, y in zip(predictions, labels) if p == 0 and y == 0)
    fp = sum(1 for p, y in zip(predictions, labels) if p == 1 and y == 0)
    fn = sum(1 for p, y in zip(predictions, labels) if p == 0 and y == 1)
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def perplexity(total_nll: float, tokens: int) -> float:
    """exp(total negative log-likelihood in nats / number of predicted tokens)."""
    if tokens <= 0:
        raise ValueError(f"`tokens > 0` must hold, but got {tokens=}.")
    return math.exp(total_nll / tokens)


def _same_length(predictions: Sequence[int], labels: Sequence[int]) -> None:
    if len(predictions) != len(labels):
        raise ValueError(
            f"predictions and labels must have the same length, but got {len(predictions)} and {len(labels)}."
        )
