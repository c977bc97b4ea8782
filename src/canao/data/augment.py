"""Data augmentation for distillation: words replaced by their neighbours in the teacher's embedding table.

TinyBERT (Jiao et al. 2020, Sec. 3.3) multiplies a GLUE task's training text by replacing words with a
BERT masked-LM's predictions or GloVe neighbours, and distills the student on the teacher's outputs for the
new sentences; on the small GLUE tasks that is what brings a 4-layer student close to its teacher. Offline
there is neither a masked-LM head (the default teacher is a sentence-embedding model) nor GloVe, so the
candidates come from the teacher itself: for every whole-word token of its WordPiece vocabulary, the `k`
whole-word tokens nearest by cosine similarity of their input embeddings. A word of a sentence whose
lower-cased form is one vocabulary token is replaced, with probability `p`, by one of its neighbours drawn
uniformly; every other word is kept. The labels of augmented sentences are unknown: they train on the
teacher's logits only (their label is None, see canao.train.tasks).

Example::

    replacer = NeighbourReplacer.from_vocab(tokenizer.get_vocab(), embeddings)
    extra = augment_examples(train_examples, replacer, copies=4, p=0.4, seed=0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

import numpy as np

from canao.data.glue import PairExample
from canao.errors import SpecError

WORD = re.compile(r"^[a-z]{2,}$")
CHUNK = 2048  # rows of the similarity matrix computed at a time


@dataclass(frozen=True)
class NeighbourReplacer:
    """Whole-word token -> its nearest whole-word tokens in the embedding table."""

    neighbours: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int], embeddings: np.ndarray, k: int = 10) -> "NeighbourReplacer":
        if k < 1:
            raise SpecError(f"`k >= 1` neighbours must hold, but got {k}.")
        words = sorted((w for w in vocab if WORD.match(w)), key=vocab.__getitem__)
        if len(words) <= k:
            raise SpecError(f"the vocabulary has {len(words)} whole-word tokens; need more than k={k}.")
        vectors = np.asarray(embeddings, dtype=np.float32)[[vocab[w] for w in words]]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
        table: dict[str, tuple[str, ...]] = {}
        for start in range(0, len(words), CHUNK):
            sims = vectors[start : start + CHUNK] @ vectors.T
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf  # a word is not its own neighbour
            top = np.argpartition(-sims, k, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
            for r, idx in enumerate(np.take_along_axis(top, order, axis=1)):
                table[words[start + r]] = tuple(words[j] for j in idx)
        return cls(table)

    def augment(self, text: str, rng: np.random.Generator, p: float) -> str:
        """`text` with each replaceable word swapped for a random neighbour with probability p."""
        out = []
        for word in text.split(" "):
            options = self.neighbours.get(word.lower())
            if options and rng.random() < p:
                word = options[int(rng.integers(len(options)))]
            out.append(word)
        return " ".join(out)


def augment_examples(
    examples: Sequence[PairExample], replacer: NeighbourReplacer, copies: int, p: float = 0.4, seed: int = 0
) -> list[PairExample]:
    """`copies` augmented variants of each example (label None; duplicates of the original dropped)."""
    if copies < 0 or not 0.0 < p <= 1.0:
        raise SpecError(f"need copies >= 0 and 0 < p <= 1, but got copies={copies}, p={p}.")
    rng = np.random.default_rng(seed)
    out: list[PairExample] = []
    for example in examples:
        seen = {(example.text_a, example.text_b)}
        for i in range(copies):
            a = replacer.augment(example.text_a, rng, p)
            b: Optional[str] = replacer.augment(example.text_b, rng, p) if example.text_b is not None else None
            if (a, b) in seen:
                continue
            seen.add((a, b))
            out.append(replace(example, text_a=a, text_b=b, label=None, guid=f"{example.guid}-aug{i}"))
    return out
