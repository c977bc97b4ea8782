"""QA over long contexts: windows, n-best decoding across windows, offsets, several questions, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from canao.apps.inference import AppError
from canao.apps.qa import QAOptions, answer_questions
from canao.data.bundled import bundled_squad_sample
from canao.data.squad import QAExample, qa_features


def _context() -> str:
    raw = json.loads(bundled_squad_sample().read_text())
    return raw["data"][0]["paragraphs"][0]["context"]


def _brute_force(art, question: str, context: str, options: QAOptions) -> tuple[float, int, int]:
    """Every (start <= end) pair of context tokens of every window, scored by start + end logit."""
    features = qa_features([QAExample("q", question, context, (), -1)], art.tokenizer, max_length=64, doc_stride=32)
    best = (-np.inf, 0, 0)
    for feat in features:
        out = art.model.run(np.array(feat.input_ids), token_type_ids=np.array(feat.type_ids))
        s, e = out["start_logits"][0], out["end_logits"][0]
        inside = [i for i, o in enumerate(feat.offsets) if o[0] >= 0]
        for i in inside:
            for j in inside:
                if i <= j < i + options.max_answer_tokens and s[i] + e[j] > best[0]:
                    best = (float(s[i] + e[j]), feat.offsets[i][0], feat.offsets[j][1])
    return best


def test_long_context_is_windowed_and_the_best_span_over_all_windows_wins(qa_art):
    context = _context()
    options = QAOptions(max_length=64, doc_stride=32, n_best=64, top_k=3)
    result = answer_questions(qa_art, ["What is Normandy?"], context, options)
    assert result.timings.windows > 2  # 64-token windows over a ~170-token paragraph
    (answers,) = result.answers
    score, start, end = _brute_force(qa_art, "What is Normandy?", context, options)
    assert answers[0].score == pytest.approx(score, abs=1e-4)
    assert (answers[0].start, answers[0].end) == (start, end)
    assert answers[0].text == context[start:end] and answers[0].text
    assert len({(a.start, a.end) for a in answers}) == 3  # distinct spans, best first
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    assert 0 < sum(a.probability for a in answers) <= 1 + 1e-9
    assert result.timings.model_ms > 0 and result.timings.total_ms >= result.timings.model_ms


def test_several_questions_answer_as_one_at_a_time(qa_art):
    context, questions = _context(), ["Who were the Normans?", "Where is Normandy?", "When?"]
    together = answer_questions(qa_art, questions, context, QAOptions(max_length=64, doc_stride=32))
    for q, answers in zip(questions, together.answers):
        alone = answer_questions(qa_art, [q], context, QAOptions(max_length=64, doc_stride=32))
        assert alone.answers[0] == answers


@pytest.mark.parametrize(
    "questions, context, message",
    [
        ([], "text", "at least one question"),
    ],
)
def test_bad_input_is_a_clear_error(qa_art, questions, context, message):
    with pytest.raises(AppError, match=message):
        answer_questions(qa_art, questions, context, QAOptions(max_length=64, doc_stride=32))


def test_options_are_checked():
    with pytest.raises(AppError, match="doc_stride"):
        QAOptions(max_length=64, doc_stride=64)


def test_a_model_of_another_task_is_refused(lm_art):
    with pytest.raises(AppError, match="needs a `qa` artifact"):
        answer_questions(lm_art, ["q?"], "context")


def test_a_long_question_is_cut_to_leave_room_for_the_context(qa_art):
    long = "why " * 200 + "is the sky blue?"
    result = answer_questions(qa_art, [long, "short?"], "The sky is blue because of Rayleigh scattering.")
    assert result.questions_cut == [0] and result.answers[0] and result.answers[1]


def test_blank_input_gets_no_answer_rather_than_an_error(qa_art):
    result = answer_questions(qa_art, ["q?", "\x1d"], " \x1d ")
    assert result.answers == [[], []]
