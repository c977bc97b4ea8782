"""Small inference helpers over a loaded artifact: embeddings, classification, span QA, greedy decoding.

They need numpy, the tokenizer and the compiled runtime only (no torch).

Example::

    art = load_artifact("art")
    embed(art, ["a sentence", "another one"])           # (2, hidden), L2-normalised
    answer(art, "who?", "context ...")                   # span QA artifact
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from canao.compiler.artifact import Artifact
from canao.errors import CanaoError

log = logging.getLogger(__name__)


class AppError(CanaoError, ValueError):
    """The artifact cannot serve this request (wrong task, no tokenizer)."""


def _need(art: Artifact, task: str) -> None:
    if art.tokenizer is None:
        raise AppError(f"{art.path} has no tokenizer.json; recompile it from a checkpoint that has a tokenizer.")
    if art.model.task != task:
        raise AppError(f"this needs a `{task}` artifact, but {art.path} is `{art.model.task}`.")


def _encode(art: Artifact, text: str, pair: Optional[str] = None):  # -> tokenizers.Encoding
    """Tokenise; text the tokenizer cannot take (e.g. lone surrogates from undecodable bytes) is a user error."""
    try:
        return art.tokenizer.encode(text, pair) if pair is not None else art.tokenizer.encode(text)
    except (TypeError, ValueError, UnicodeError) as err:
        raise AppError(f"the tokenizer cannot encode this text ({err}); pass valid UTF-8 text.") from err


def _ids(art: Artifact, text: str, pair: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    enc = _encode(art, text, pair)
    limit = art.model.spec.max_positions
    return np.array(enc.ids[:limit]), np.array(enc.type_ids[:limit])


def embed(art: Artifact, texts: list[str]) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (Sentence-BERT pooling)."""
    _need(art, "backbone")
    rows = []
    for text in texts:
        ids, _ = _ids(art, text)
        hidden = art.model.run(ids)["last_hidden_state"][0]
        vec = hidden.mean(axis=0)
        rows.append(vec / max(float(np.linalg.norm(vec)), 1e-12))
    return np.stack(rows)


def classify(art: Artifact, text: str, pair: str | None = None) -> dict[str, float]:
    _need(art, "classification")
    ids, types = _ids(art, text, pair)
    logits = art.model.run(ids, token_type_ids=types)["logits"][0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    labels = art.task.get("labels") or {}
    return {labels.get(str(i), str(i)): float(p) for i, p in enumerate(probs)}


@dataclass(frozen=True)
class Answer:
    text: str
    score: float


def answer(art: Artifact, question: str, context: str, max_answer_tokens: int = 30) -> Answer:
    """The best span (start <= end, inside the context, at most max_answer_tokens) by start+end logit."""
    _need(art, "qa")
    enc = _encode(art, question, context)
    limit = art.model.spec.max_positions
    ids, types = np.array(enc.ids[:limit]), np.array(enc.type_ids[:limit])
    out = art.model.run(ids, token_type_ids=types)
    start, end = out["start_logits"][0], out["end_logits"][0]
    in_context = [i for i, s in enumerate(enc.sequence_ids[:limit]) if s == 1]
    best = (-np.inf, 0, 0)
    for i in in_context:
        for j in in_context:
            if i <= j < i + max_answer_tokens and start[i] + end[j] > best[0]:
                best = (float(start[i] + end[j]), i, j)
    if not in_context:
        return Answer("", float("-inf"))
    _, i, j = best
    return Answer(context[enc.offsets[i][0] : enc.offsets[j][1]], best[0])


@dataclass(frozen=True)
class Generation:
    text: str  # the continuation only
    new_tokens: int
    prompt_tokens_dropped: int  # tokens cut from the left of a prompt too long for the context window


def greedy_generate(art: Artifact, prompt: str, max_new_tokens: int = 20) -> Generation:
    """Greedy continuation of `prompt` with the KV-cached decoder.

    A prompt that leaves no room for `max_new_tokens` in the context window is
    cut from the left (the most recent tokens are kept) and the cut is reported."""
    _need(art, "lm")
    if max_new_tokens < 1:
        raise AppError(f"`max_new_tokens >= 1` must hold, but got {max_new_tokens=}.")
    ids = _encode(art, prompt).ids or [0]
    room = art.model.spec.max_positions
    keep = max(1, room - max_new_tokens)
    dropped = max(0, len(ids) - keep)
    if dropped:
        log.warning(
            "the prompt has %d tokens; kept the last %d so that %d new tokens fit the %d-token context.",
            len(ids),
            keep,
            min(max_new_tokens, room - keep),
            room,
        )
        ids = ids[-keep:]
    session = art.model.new_session()
    logits = session.prefill(np.array(ids))[-1]
    new: list[int] = []
    for _ in range(min(max_new_tokens, room - len(ids))):
        token = int(np.argmax(logits))
        new.append(token)
        if session.length >= room:
            break
        logits = session.decode_step(token)[-1]
    return Generation(art.tokenizer.decode(new), len(new), dropped)


def run_text(art: Artifact, texts: list[str], *, context: Optional[str] = None, max_new_tokens: int = 20) -> list[str]:
    """`canao run`: what the artifact's task does with `texts`, as lines to print.

    backbone: embeddings (and the cosine of two texts); classification: label
    probabilities (a second text is the pair); qa: the answer span in
    `context`; lm: the prompt and its greedy continuation."""
    if not texts:
        raise AppError("give at least one --text.")
    task = art.model.task
    if task == "backbone":
        vectors = embed(art, texts)
        lines = [
            f"{t!r}: embedding[{v.size}] = [{', '.join(f'{x:+.4f}' for x in v[:6])}, ...]"
            for t, v in zip(texts, vectors)
        ]
        return lines + ([f"cosine similarity: {float(vectors[0] @ vectors[1]):.4f}"] if len(texts) > 1 else [])
    if task == "classification":
        return [str(classify(art, texts[0], texts[1] if len(texts) > 1 else None))]
    if task == "qa":
        if context is None:
            raise AppError("a span-QA artifact needs --context with the paragraph to search.")
        ans = answer(art, texts[0], context)
        return [f"answer: {ans.text!r} (score {ans.score:.2f})"]
    generation = greedy_generate(art, texts[0], max_new_tokens)
    note = (
        [f"(the prompt was cut: its first {generation.prompt_tokens_dropped} tokens did not fit the context window)"]
        if generation.prompt_tokens_dropped
        else []
    )
    return [texts[0] + generation.text, *note]
