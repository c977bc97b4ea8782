"""Small inference helpers over a loaded artifact: embeddings, classification, span QA, greedy decoding.

They need numpy, the tokenizer and the compiled runtime only (no torch).

Example::

    art = load_artifact("art")
    embed(art, ["a sentence", "another one"])           # (2, hidden), L2-normalised
    classify(art, "a fine film")                         # label probabilities
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from canao.compiler.artifact import Artifact
from canao.errors import CanaoError


class AppError(CanaoError, ValueError):
    """The artifact cannot serve this request (wrong task, no tokenizer)."""


def need_task(art: Artifact, task: str) -> None:
    """Refuse an artifact of another task (or without a tokenizer) with a message that says which."""
    if art.tokenizer is None:
        raise AppError(f"{art.path} has no tokenizer.json; recompile it from a checkpoint that has a tokenizer.")
    if art.model.task != task:
        raise AppError(f"this needs a `{task}` artifact, but {art.path} is `{art.model.task}`.")


# What the tokenizers library raises for text it cannot take (e.g. lone surrogates from undecodable bytes).
TOKENIZER_ERRORS = (TypeError, ValueError, UnicodeError)


def untokenizable(err: Exception) -> AppError:
    return AppError(f"the tokenizer cannot encode this text ({err}); pass valid UTF-8 text.")


def encode_text(
    art: Artifact, text: str, pair: Optional[str] = None, *, add_special_tokens: bool = True
):  # -> tokenizers.Encoding
    """Tokenise; text the tokenizer cannot take is a user error."""
    try:
        return art.tokenizer.encode(text, pair, add_special_tokens=add_special_tokens)
    except TOKENIZER_ERRORS as err:
        raise untokenizable(err) from err


def finite(art: Artifact, values: np.ndarray) -> np.ndarray:
    """`values` (a model output), refused if any is NaN or infinite: damaged weights or a diverged training run
    would otherwise answer with nonsense (an empty generation, a label picked from NaNs) and exit 0."""
    if not np.isfinite(values).all():
        raise AppError(
            f"{art.path}: the model's outputs hold NaN or infinite values; its weights are damaged or came from a "
            "diverged training run (retrain or recompile it)."
        )
    return values


def _ids(art: Artifact, text: str, pair: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    enc = encode_text(art, text, pair)
    limit = art.model.spec.max_positions
    return np.array(enc.ids[:limit]), np.array(enc.type_ids[:limit])


def embed(art: Artifact, texts: list[str]) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (Sentence-BERT pooling)."""
    need_task(art, "backbone")
    rows = []
    for text in texts:
        ids, _ = _ids(art, text)
        hidden = finite(art, art.model.run(ids)["last_hidden_state"][0])
        vec = hidden.mean(axis=0)
        rows.append(vec / max(float(np.linalg.norm(vec)), 1e-12))
    return np.stack(rows)


def classify(art: Artifact, text: str, pair: str | None = None) -> dict[str, float]:
    need_task(art, "classification")
    ids, types = _ids(art, text, pair)
    logits = finite(art, art.model.run(ids, token_type_ids=types)["logits"][0])
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    labels = art.task.get("labels") or {}
    return {labels.get(str(i), str(i)): float(p) for i, p in enumerate(probs)}


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
        if len(texts) > 2:
            raise AppError(f"a classification artifact takes one --text, or two for a pair, but got {len(texts)}.")
        return [str(classify(art, texts[0], texts[1] if len(texts) > 1 else None))]
    if task == "qa":
        if context is None:
            raise AppError("a span-QA artifact needs --context with the paragraph to search.")
        from canao.apps.qa import answer_questions

        result = answer_questions(art, texts, context)
        return [
            f"{q!r}: {a[0].text!r} (score {a[0].score:.2f})" if a else f"{q!r}: no answer span found"
            for q, a in zip(texts, result.answers)
        ]
    from canao.apps.generate import GenerationSettings, generate

    if len(texts) > 1:
        raise AppError(f"a decoder artifact continues one --text (the prompt), but got {len(texts)}.")
    generation = generate(art, texts[0], GenerationSettings(max_new_tokens=max_new_tokens))
    dropped = generation.stats.prompt_tokens_dropped
    note = [f"(the prompt was cut: its first {dropped} tokens did not fit the context window)"] if dropped else []
    return [texts[0] + generation.text, *note]
