"""SQuAD v1.1 / v2.0 JSON reading (the official format), with errors that name the file.

The official format is {"version", "data": [{"title", "paragraphs": [{"context",
"qas": [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}.
The bundled sample (2 articles of SQuAD v1.1 dev, CC BY-SA 4.0) makes the
defaults work offline; any official file can be passed by path.

Example::

    articles = read_squad(bundled_squad_sample())
    sum(len(p.questions) for a in articles for p in a.paragraphs)  # 218
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from canao.errors import DataError
from canao.storage import read_user_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the paragraph's context


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[Answer, ...]
    is_impossible: bool = False


@dataclass(frozen=True)
class Paragraph:
    context: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[Paragraph, ...]


def _question(raw: dict, where: str) -> Question:
    try:
        answers = tuple(Answer(str(a["text"]), int(a["answer_start"])) for a in raw.get("answers", []))
        return Question(str(raw["id"]), str(raw["question"]), answers, bool(raw.get("is_impossible", False)))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"{where}: question entry lacks a valid field ({err!r}); expected id, question, answers."
        ) from err


@dataclass
class AnchorReport:
    """Answers whose text did not match the context at their offset: moved to the nearest match, or dropped."""

    answers: int = 0
    re_anchored: int = 0
    skipped: int = 0  # the text occurs nowhere in the context
    questions_dropped: int = 0  # answerable questions left with no usable answer


def _anchor(answer: Answer, context: str, report: AnchorReport) -> Optional[Answer]:
    """The answer with an offset where its text really is: as given, else the occurrence nearest to it."""
    report.answers += 1
    if context[answer.start : answer.start + len(answer.text)] == answer.text:
        return answer
    hits, at = [], context.find(answer.text)
    while at >= 0 and answer.text:
        hits.append(at)
        at = context.find(answer.text, at + 1)
    if not hits:
        report.skipped += 1
        return None
    report.re_anchored += 1
    return Answer(answer.text, min(hits, key=lambda h: abs(h - answer.start)))


def read_squad(path: Path | str, report: Optional[AnchorReport] = None) -> list[Article]:
    """All articles of a SQuAD JSON file (.json, or .json.gz).

    An answer whose text is not at its offset is re-anchored to the nearest
    occurrence of the text, or skipped if the text is not in the context; the
    counts go to `report` and to a warning, so nothing is trained on a wrong span."""
    path = Path(path)
    report = report if report is not None else AnchorReport()
    text = read_user_text(path, "a SQuAD v1.1/v2.0 JSON file (.json or .json.gz)", DataError)
    try:
        raw = json.loads(text)
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply; not a SQuAD file.") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}).") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{path}: field `data` (a list of articles) is missing; not a SQuAD file.")
    articles = []
    for i, art in enumerate(raw["data"]):
        paragraphs = []
        for j, par in enumerate(art.get("paragraphs", [])):
            where = f"{path}: data[{i}].paragraphs[{j}]"
            if "context" not in par:
                raise DataError(f"{where}: field `context` is missing.")
            context = str(par["context"])
            qs = []
            for k, q in enumerate(par.get("qas", [])):
                question = _question(q, f"{where}.qas[{k}]")
                anchored = tuple(a for a in (_anchor(a, context, report) for a in question.answers) if a)
                if question.answers and not anchored and not question.is_impossible:
                    report.questions_dropped += 1
                    continue
                qs.append(Question(question.id, question.question, anchored, question.is_impossible))
            paragraphs.append(Paragraph(context, tuple(qs)))
        articles.append(Article(str(art.get("title", f"article-{i}")), tuple(paragraphs)))
    if report.re_anchored or report.skipped:
        log.warning(
            "%s: %d of %d answers were not at their offsets: %d re-anchored to the nearest occurrence, %d skipped "
            "(text not in the context); %d questions dropped for want of an answer.",
            path,
            report.re_anchored + report.skipped,
            report.answers,
            report.re_anchored,
            report.skipped,
            report.questions_dropped,
        )
    return articles


# ------------------------------------------------------------------ features
@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]  # gold texts; empty for an unanswerable v2.0 question
    answer_start: int  # character offset of the first gold answer (-1 if none)


@dataclass(frozen=True)
class QAFeature:
    """One window of (question, context) tokens; labels point at the answer or at [CLS] (index 0)."""

    example_index: int
    input_ids: tuple[int, ...]
    type_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]  # character spans into the context; (-1, -1) outside it
    start_position: int
    end_position: int


def qa_examples(articles: list[Article]) -> list[QAExample]:
    out = []
    for article in articles:
        for par in article.paragraphs:
            for q in par.questions:
                answers = () if q.is_impossible else tuple(a.text for a in q.answers)
                start = q.answers[0].start if answers else -1
                out.append(QAExample(q.id, q.question, par.context, answers, start))
    return out


_WINDOWED: dict[tuple[int, int, int], tuple[Any, Any]] = {}


def _window_tokenizer(tokenizer, max_length: int, doc_stride: int):
    """A copy of `tokenizer` that cuts the context into overlapping windows (the question is kept whole).

    Copies are cached per (tokenizer, max_length, doc_stride): making one
    re-parses the whole vocabulary (~0.2 s for BERT's), far more than a
    question costs. The cache holds the original too, so its id stays unique."""
    from tokenizers import Tokenizer

    key = (id(tokenizer), max_length, doc_stride)
    if key not in _WINDOWED:
        windowed = Tokenizer.from_str(tokenizer.to_str())
        windowed.no_padding()
        windowed.enable_truncation(max_length=max_length, stride=doc_stride, strategy="only_second")
        if len(_WINDOWED) >= 16:
            _WINDOWED.pop(next(iter(_WINDOWED)))
        _WINDOWED[key] = (tokenizer, windowed)
    return _WINDOWED[key][1]


def qa_features(
    examples: list[QAExample], tokenizer, *, max_length: int = 384, doc_stride: int = 128
) -> list[QAFeature]:
    """Tokenise with doc stride (Devlin et al. 2019, Sec. 4.2) and map each gold span to token positions."""
    windowed = _window_tokenizer(tokenizer, max_length, doc_stride)
    features = []
    for index, ex in enumerate(examples):
        try:
            first = windowed.encode(ex.question, ex.context)
        except Exception as err:  # the Rust side raises a bare Exception when the question leaves no room
            raise DataError(
                f"question {ex.id}: cannot be windowed with max_length={max_length}, "
                f"doc_stride={doc_stride} ({err}); raise max_length."
            ) from err
        for enc in [first, *first.overflowing]:
            offsets = tuple(o if s == 1 else (-1, -1) for o, s in zip(enc.offsets, enc.sequence_ids))
            start_pos = end_pos = 0
            if ex.answers:
                a_start, a_end = ex.answer_start, ex.answer_start + len(ex.answers[0])
                inside = [i for i, (s, e) in enumerate(offsets) if s >= 0 and s < a_end and e > a_start]
                if inside and offsets[inside[0]][0] <= a_start and offsets[inside[-1]][1] >= a_end:
                    start_pos, end_pos = inside[0], inside[-1]
            features.append(QAFeature(index, tuple(enc.ids), tuple(enc.type_ids), offsets, start_pos, end_pos))
    return features


@dataclass(frozen=True)
class SpanCandidate:
    """A candidate answer span of one window: token positions, character offsets and start+end logit."""

    score: float
    start_token: int
    end_token: int
    start_char: int
    end_char: int


def span_candidates(
    feature: QAFeature, start_logits, end_logits, *, n_best: int = 20, max_answer_tokens: int = 30
) -> list[SpanCandidate]:
    """Valid spans among the window's `n_best` starts x `n_best` ends, best first.

    Valid: both ends inside the context, start <= end, at most
    `max_answer_tokens` long (the BERT recipe; the scores are raw logits, so
    windows of one question compare directly)."""
    import numpy as np

    s_log = np.asarray(start_logits)[: len(feature.input_ids)]
    e_log = np.asarray(end_logits)[: len(feature.input_ids)]
    offsets = feature.offsets
    out = []
    for i in np.argsort(s_log)[::-1][:n_best]:
        for j in np.argsort(e_log)[::-1][:n_best]:
            if offsets[i][0] < 0 or offsets[j][0] < 0 or j < i or j - i + 1 > max_answer_tokens:
                continue
            out.append(SpanCandidate(float(s_log[i] + e_log[j]), int(i), int(j), offsets[i][0], offsets[j][1]))
    out.sort(key=lambda c: -c.score)
    return out


def best_answers(
    examples: list[QAExample],
    features: list[QAFeature],
    start_logits: list,
    end_logits: list,
    *,
    n_best: int = 20,
    max_answer_tokens: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
) -> dict[str, str]:
    """{question id: answer text}: the highest start+end logit span over all windows of each question.

    With `version_2`, the empty answer wins when the [CLS] score beats the
    best span by more than `null_threshold` (the SQuAD v2.0 recipe)."""
    best: dict[int, tuple[float, str]] = {}
    null: dict[int, float] = {}
    for feat, s_log, e_log in zip(features, start_logits, end_logits):
        null[feat.example_index] = min(null.get(feat.example_index, float("inf")), float(s_log[0] + e_log[0]))
        spans = span_candidates(feat, s_log, e_log, n_best=n_best, max_answer_tokens=max_answer_tokens)
        if spans and spans[0].score > best.get(feat.example_index, (-float("inf"), ""))[0]:
            context = examples[feat.example_index].context
            best[feat.example_index] = (spans[0].score, context[spans[0].start_char : spans[0].end_char])
    out = {}
    for index, ex in enumerate(examples):
        score, text = best.get(index, (-float("inf"), ""))
        if version_2 and null.get(index, -float("inf")) > score + null_threshold:
            text = ""
        out[ex.id] = text
    return out
