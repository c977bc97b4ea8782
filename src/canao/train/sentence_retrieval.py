"""Zero-shot answer-sentence retrieval on SQuAD: a real task for an untuned sentence encoder.

For every SQuAD question, the paragraph is split into sentences and the
sentence that holds the gold answer's first character is the target. The
encoder ranks sentences by cosine similarity of mean-pooled embeddings
(Sentence-BERT; the default teacher all-MiniLM-L6-v2 was trained for exactly
this kind of semantic search). Reported: top-1 accuracy and mean reciprocal
rank, next to a word-overlap baseline and the chance level, so the number
means something.

Example::

    result = evaluate_sentence_retrieval(teacher.model, teacher.tokenizer, read_squad(path))
    result.top1, result.mrr
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from canao.data.squad import Article
from canao.models.heads import backbone_of, mean_pool

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or is was were are be been what which who whom "
    "when where why how did does do that this these those as it its".split()
)


@dataclass(frozen=True)
class RetrievalItem:
    question: str
    sentences: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class RetrievalResult:
    questions: int
    top1: float
    mrr: float
    overlap_top1: float  # word-overlap baseline
    chance_top1: float  # expected top-1 of a uniform random pick


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text` (split after . ! ? before a capital/digit)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def retrieval_items(articles: Iterable[Article], limit: Optional[int] = None) -> list[RetrievalItem]:
    """One item per answerable question whose paragraph has at least two sentences."""
    items: list[RetrievalItem] = []
    for article in articles:
        for par in article.paragraphs:
            spans = split_sentences(par.context)
            if len(spans) < 2:
                continue
            sentences = tuple(par.context[a:b] for a, b in spans)
            for q in par.questions:
                if not q.answers:
                    continue
                start = q.answers[0].start
                gold = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
                if gold is not None:
                    items.append(RetrievalItem(q.question, sentences, gold))
                if limit is not None and len(items) >= limit:
                    return items
    return items


def embed_texts(
    model: Any,
    tokenizer,
    texts: list[str],
    *,
    batch_size: int = 32,
    max_tokens: int = 256,
    progress: Optional[Callable[[int], None]] = None,
) -> np.ndarray:
    """L2-normalised mean-pooled embeddings (N, hidden) of `texts` with the encoder backbone.

    `model` is a PyTorch encoder, or a compiled backbone (canao.compiler.runtime.CompiledModel), which
    runs each text unpadded, so the same retrieval metric measures what a deployment computes."""
    if hasattr(model, "run"):
        rows = []
        for text in texts:
            hidden = model.run(tokenizer.encode(text).ids[:max_tokens])["last_hidden_state"][0]
            pooled = hidden.mean(0)
            rows.append(pooled / max(float(np.linalg.norm(pooled)), 1e-12))
            if progress is not None:
                progress(1)
        return np.stack(rows)
    encoder = backbone_of(model)
    out = []
    for i in range(0, len(texts), batch_size):
        batch = [tokenizer.encode(t).ids[:max_tokens] for t in texts[i : i + batch_size]]
        width = max(len(ids) for ids in batch)
        ids = torch.tensor([x + [0] * (width - len(x)) for x in batch])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch])
        with torch.no_grad():
            pooled = mean_pool(encoder(ids, mask).last_hidden_state, mask)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        if progress is not None:
            progress(len(batch))
    return np.concatenate(out)


def _overlap_rank(item: RetrievalItem) -> int:
    """Rank (0-based) of the gold sentence under content-word overlap with the question."""
    words = set(_WORD.findall(item.question.lower())) - _STOPWORDS
    scores = [len(words & set(_WORD.findall(s.lower()))) for s in item.sentences]
    return sum(score > scores[item.gold] for score in scores)


def evaluate_sentence_retrieval(
    model: Any, tokenizer, items: list[RetrievalItem], *, progress: Optional[Callable[[int], None]] = None
) -> RetrievalResult:
    """Top-1 and MRR of ranking each question's paragraph sentences by embedding similarity."""
    if not items:
        raise ValueError("no retrieval items: the data has no answerable question in a multi-sentence paragraph.")
    sentences = sorted({s for item in items for s in item.sentences})
    index = {s: i for i, s in enumerate(sentences)}
    sent_emb = embed_texts(model, tokenizer, sentences, progress=progress)
    q_emb = embed_texts(model, tokenizer, [item.question for item in items], progress=progress)
    ranks = []
    for q, item in zip(q_emb, items):
        scores = sent_emb[[index[s] for s in item.sentences]] @ q
        ranks.append(int((scores > scores[item.gold]).sum()))
    ranks_arr = np.array(ranks)
    overlap = np.array([_overlap_rank(item) for item in items])
    return RetrievalResult(
        questions=len(items),
        top1=float((ranks_arr == 0).mean()),
        mrr=float((1.0 / (ranks_arr + 1)).mean()),
        overlap_top1=float((overlap == 0).mean()),
        chance_top1=float(np.mean([1.0 / len(item.sentences) for item in items])),
    )
