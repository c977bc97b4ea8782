"""Small inference helpers over a loaded artifact: embeddings, classification, span QA, greedy decoding.

They need numpy, the tokenizer and the compiled runtime only (no torch).

Example::

    art = load_artifact("art")
    embed(art, ["a sentence", "another one"])           # (2, hidden), L2-normalised
    answer(art, "who?", "context ...")                   # span QA artifact
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canao.compiler.artifact import Artifact
from canao.errors import CanaoError


class AppError(CanaoError, ValueError):
    """The artifact cannot serve this request (wrong task, no tokenizer)."""


def _need(art: Artifact, task: str) -> None:
    if art.tokenizer is None:
        raise AppError(f"{art.path} has no tokenizer.json; recompile it from a checkpoint that has a tokenizer.")
    if art.model.task != task:
        raise AppError(f"this needs a `{task}` artifact, but {art.path} is `{art.model.task}`.")


def _ids(art: Artifact, text: str, pair: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    enc = art.tokenizer.encode(text, pair) if pair is not None else art.tokenizer.encode(text)
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
    enc = art.tokenizer.encode(question, context)
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
    return Answer(context[enc.offsets[i][0]:enc.offsets[j][1]], best[0])


def greedy_generate(art: Artifact, prompt: str, max_new_tokens: int = 20) -> str:
    """Greedy continuation of `prompt` with the KV-cached decoder."""
    _need(art, "lm")
    ids = art.tokenizer.encode(prompt).ids or [0]
    session = art.model.new_session()
    room = art.model.spec.max_positions
    ids = ids[-room:]
    logits = session.prefill(np.array(ids))[-1]
    new: list[int] = []
    for _ in range(min(max_new_tokens, room - len(ids))):
        token = int(np.argmax(logits))
        new.append(token)
        if session.length >= room:
            break
        logits = session.decode_step(token)[-1]
    return art.tokenizer.decode(new)
