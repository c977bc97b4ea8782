"""Extractive question answering on a compiled span-QA artifact, for contexts of any length.

A context longer than the model's window is cut into overlapping windows
(doc stride, as in training: canao.data.squad.qa_features), every window is
scored, and the answer is the best valid span over all windows (n-best
starts x ends, at most `max_answer_tokens` long). Each answer carries its
character offsets in the context (for highlighting), its start+end logit and
a probability (softmax over the n-best spans of the question), and the call
reports where the time went (tokenise, model, decode).

Example::

    art = load_artifact("qa-artifact")
    result = answer_questions(art, ["Who wrote it?"], open("story.txt").read())
    result.answers[0][0].text, result.timings.model_ms
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from canao.apps.inference import TOKENIZER_ERRORS, AppError, encode_text, finite, need_task, untokenizable
from canao.compiler.artifact import Artifact
from canao.data.squad import QAExample, qa_features, span_candidates
from canao.errors import DataError

MAX_ANSWERS = 20


@dataclass(frozen=True)
class QAOptions:
    """How contexts are windowed and spans decoded (defaults: the BERT SQuAD recipe)."""

    max_length: int = 384  # window length in tokens (capped at the model's positions)
    doc_stride: int = 128  # tokens of overlap between consecutive windows
    n_best: int = 20  # starts and ends considered per window
    max_answer_tokens: int = 30
    top_k: int = 1  # answers returned per question
    max_question_tokens: int = 64  # longer questions are cut (BERT's max_query_length), leaving room for context

    def __post_init__(self) -> None:
        checks = {
            "max_length": 16 <= self.max_length <= 100_000,
            "doc_stride": 1 <= self.doc_stride < self.max_length,
            "n_best": 1 <= self.n_best <= 100,
            "max_answer_tokens": 1 <= self.max_answer_tokens <= 512,
            "top_k": 1 <= self.top_k <= MAX_ANSWERS,
            "max_question_tokens": 1 <= self.max_question_tokens,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise AppError(
                f"invalid QA option(s) {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}: need "
                f"16 <= max_length, 1 <= doc_stride < max_length, 1 <= n_best <= 100, "
                f"1 <= max_answer_tokens <= 512, 1 <= top_k <= {MAX_ANSWERS}."
            )


@dataclass(frozen=True)
class SpanAnswer:
    text: str
    start: int  # character offsets into the context: context[start:end] == text
    end: int
    score: float  # start + end logit
    probability: float  # softmax of the score over the question's candidate spans
    window: int  # which window of the context it came from


@dataclass
class Timings:
    tokenize_ms: float = 0.0
    model_ms: float = 0.0
    decode_ms: float = 0.0
    windows: int = 0

    @property
    def total_ms(self) -> float:
        return self.tokenize_ms + self.model_ms + self.decode_ms

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total_ms": self.total_ms}


@dataclass
class QAResult:
    answers: list[list[SpanAnswer]]  # per question, best first (empty when the context has no valid span)
    timings: Timings = field(default_factory=Timings)
    questions_cut: list[int] = field(default_factory=list)  # indexes of questions cut to max_question_tokens


def answer_questions(
    art: Artifact,
    questions: list[str],
    context: str,
    options: QAOptions = QAOptions(),
    progress: Optional[Callable[[int, int], None]] = None,
) -> QAResult:
    """The best `options.top_k` spans of `context` for each question, over all windows; `progress(done, total)`
    after each window (a long document runs hundreds)."""
    need_task(art, "qa")
    if not questions:
        raise AppError("give at least one question.")
    # A blank question or context is answered, not refused (no valid span: no answer), so that every request
    # the HTTP schema admits gets a 200; the CLI refuses blank input itself.
    timings = Timings()
    start = time.perf_counter()
    max_length = min(options.max_length, art.model.spec.max_positions)
    limit = max(1, min(options.max_question_tokens, max_length // 2))
    clipped = [_clip_question(art, q, limit) for q in questions]
    examples = [QAExample(str(i), q, context, (), -1) for i, (q, _) in enumerate(clipped)]
    stride = min(options.doc_stride, max_length // 2)
    try:
        features = qa_features(examples, art.tokenizer, max_length=max_length, doc_stride=stride)
    except DataError as err:
        raise AppError(f"{err} (a question must leave room for the context in a {max_length}-token window).") from None
    except TOKENIZER_ERRORS as err:
        raise untokenizable(err) from err
    timings.tokenize_ms = (time.perf_counter() - start) * 1e3
    timings.windows = len(features)

    start = time.perf_counter()
    logits = []
    for done, feat in enumerate(features, 1):  # one window per call: each runs at its own length (no padding)
        out = art.model.run(np.array(feat.input_ids), token_type_ids=np.array(feat.type_ids))
        logits.append((finite(art, out["start_logits"][0]), finite(art, out["end_logits"][0])))
        if progress:
            progress(done, len(features))
    timings.model_ms = (time.perf_counter() - start) * 1e3

    start = time.perf_counter()
    per_question: list[list[tuple[float, int, int, int]]] = [[] for _ in questions]
    windows_of = [0] * len(questions)  # window index within its own question's windows
    for feat, (s_log, e_log) in zip(features, logits):
        window = windows_of[feat.example_index]
        windows_of[feat.example_index] += 1
        spans = span_candidates(feat, s_log, e_log, n_best=options.n_best, max_answer_tokens=options.max_answer_tokens)
        per_question[feat.example_index].extend((c.score, c.start_char, c.end_char, window) for c in spans)
    answers = [_top_spans(spans, context, options.top_k) for spans in per_question]
    timings.decode_ms = (time.perf_counter() - start) * 1e3
    return QAResult(answers, timings, [i for i, (_, cut) in enumerate(clipped) if cut])


def _clip_question(art: Artifact, question: str, limit: int) -> tuple[str, bool]:
    """The question cut after its `limit`-th token (the rest could not leave room for the context)."""
    enc = encode_text(art, question, add_special_tokens=False)
    if len(enc.ids) <= limit:
        return question, False
    return question[: enc.offsets[limit - 1][1]], True


def _top_spans(spans: list[tuple[float, int, int, int]], context: str, k: int) -> list[SpanAnswer]:
    """The k best distinct character spans (windows overlap, so one span can be found twice), with probabilities."""
    if not spans:
        return []
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for score, start, end, window in spans:
        if score > best.get((start, end), (-math.inf, 0))[0]:
            best[(start, end)] = (score, window)
    ranked = sorted(best.items(), key=lambda item: -item[1][0])
    top = ranked[0][1][0]
    norm = sum(math.exp(score - top) for _, (score, _) in ranked)
    return [
        SpanAnswer(context[start:end], start, end, score, math.exp(score - top) / norm, window)
        for (start, end), (score, window) in ranked[:k]
    ]
