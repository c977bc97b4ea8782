"""Tasks: how each one reads its data, makes model inputs, computes its loss and scores a model.

One small adapter per task family keeps fine-tuning, distillation and
evaluation task-agnostic: GLUE sentence(-pair) classification (sst2, mrpc,
qnli; accuracy, plus F1 and Matthews correlation), SQuAD span QA (exact match
and F1 through the official normalisation, v2.0 no-answer aware) and
language modelling (perplexity over packed blocks).

Example::

    task = get_task("sst2")
    data = task.load(path, tokenizer, max_length=128)
    batch = task.collate(data.features[:32])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from canao.data.glue import GLUE_TASKS, read_glue
from canao.data.squad import best_answers, qa_examples, qa_features, read_squad
from canao.data.text import pack_blocks, read_text
from canao.errors import DataError
from canao.train.metrics import accuracy, binary_f1, matthews_corrcoef, perplexity, squad_scores

TASK_NAMES = (*GLUE_TASKS, "squad", "lm")
MODEL_TASK = {"sst2": "classification", "mrpc": "classification", "qnli": "classification", "squad": "qa", "lm": "lm"}


@dataclass
class TaskData:
    features: list[Any]
    examples: list[Any]
    labels: Optional[list[Optional[int]]] = None  # None entries: unlabelled examples
    max_width: Optional[int] = None  # the featurizer's max_length: batches are never padded past it


def _truncating(tokenizer, max_length: int):
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.enable_truncation(max_length=max_length)
    return copy


IGNORE = -100  # label of an example without one (augmented text): left out of the hard-label loss


def padded_width(longest: int) -> int:
    """The width a batch is padded to: its longest row rounded up to a multiple of 8 (to 32 past 128 tokens).

    Why not exactly the longest row: oneDNN compiles and caches a kernel per distinct shape, and length-bucketed
    training meets hundreds of widths; with bf16 (AMX) kernels the cache grew by ~40 MB per step on the full
    SQuAD run until the process was killed at 24 GB. Rounding keeps ~24 widths up to 384 tokens, which the cache
    holds (RSS flat at ~1.2 GB over 300 steps of a 2-layer model, benchmarks in docs/training.md), for at most
    7 (31) wasted tokens a row; masked positions do not change any result."""
    step = 8 if longest <= 128 else 32
    return -(-longest // step) * step


def _pad(rows: list[tuple[int, ...]], limit: Optional[int] = None) -> torch.Tensor:
    longest = max(len(r) for r in rows)
    width = max(longest, min(padded_width(longest), limit or longest))
    return torch.tensor([list(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)


class ClassificationTask:
    """GLUE single-sentence or sentence-pair classification with 2 labels."""

    num_labels = 2

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self, path: Path, tokenizer, max_length: int = 128, **_: Any) -> TaskData:
        return self.featurize(read_glue(self.name, path), tokenizer, max_length)

    def featurize(self, examples: list[Any], tokenizer, max_length: int = 128) -> TaskData:
        tok = _truncating(tokenizer, max_length)
        features = [tok.encode(e.text_a, e.text_b) if e.text_b is not None else tok.encode(e.text_a) for e in examples]
        rows = [(tuple(f.ids), tuple(f.type_ids)) for f in features]
        return TaskData(rows, list(examples), [e.label for e in examples], max_width=max_length)

    def collate(self, data: TaskData, index: np.ndarray) -> dict[str, torch.Tensor]:
        """Padded ids, types and mask; `labels` when any example of the batch has one (others: IGNORE)."""
        rows = [data.features[i] for i in index]
        ids = _pad([r[0] for r in rows], data.max_width)
        batch = {
            "input_ids": ids,
            "token_type_ids": _pad([r[1] for r in rows], data.max_width),
            "attention_mask": _pad([(1,) * len(r[0]) for r in rows], data.max_width),
        }
        if data.labels is not None and any(data.labels[i] is not None for i in index):
            labels = [data.labels[i] for i in index]
            batch["labels"] = torch.tensor([IGNORE if y is None else y for y in labels])
        return batch

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy over the labelled examples (augmented ones carry IGNORE); 0 for a batch without any."""
        labels = batch.get("labels")
        if labels is None or not bool((labels != IGNORE).any()):
            return outputs.sum() * 0.0
        return F.cross_entropy(outputs, labels, ignore_index=IGNORE)

    def score(self, model: torch.nn.Module, data: TaskData, batch_size: int = 64) -> tuple[dict[str, float], list[int]]:
        preds: list[int] = []
        model.eval()
        with torch.no_grad():
            for start in range(0, len(data.features), batch_size):
                index = np.arange(start, min(start + batch_size, len(data.features)))
                preds += self.forward(model, self.collate(data, index)).argmax(-1).tolist()
        if data.labels is None or data.labels[0] is None:
            return {}, preds
        labels = list(data.labels)
        return {
            "accuracy": 100 * accuracy(preds, labels),
            "f1": 100 * binary_f1(preds, labels),
            "mcc": 100 * matthews_corrcoef(preds, labels),
            "examples": len(labels),
        }, preds


class SquadTask:
    """Extractive QA: windows with doc stride, start/end cross-entropy, official EM/F1."""

    name = "squad"

    def load(self, path: Path, tokenizer, max_length: int = 384, doc_stride: int = 128, **_: Any) -> TaskData:
        raw = path if isinstance(path, list) else read_squad(path)
        examples = qa_examples(raw)
        features = qa_features(examples, tokenizer, max_length=max_length, doc_stride=doc_stride)
        return TaskData(features, examples, max_width=max_length)

    def collate(self, data: TaskData, index: np.ndarray) -> dict[str, torch.Tensor]:
        rows = [data.features[i] for i in index]
        return {
            "input_ids": _pad([f.input_ids for f in rows], data.max_width),
            "token_type_ids": _pad([f.type_ids for f in rows], data.max_width),
            "attention_mask": _pad([(1,) * len(f.input_ids) for f in rows], data.max_width),
            "start_positions": torch.tensor([f.start_position for f in rows]),
            "end_positions": torch.tensor([f.end_position for f in rows]),
        }

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"] == 0
        start, end = (o.masked_fill(mask, -1e4) for o in outputs)
        return (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2

    def score(
        self, model: torch.nn.Module, data: TaskData, batch_size: int = 32, version_2: bool = False
    ) -> tuple[dict[str, float], dict[str, str]]:
        starts, ends = [], []
        model.eval()
        with torch.no_grad():
            for first in range(0, len(data.features), batch_size):
                index = np.arange(first, min(first + batch_size, len(data.features)))
                s, e = self.forward(model, self.collate(data, index))
                starts += list(s.numpy())
                ends += list(e.numpy())
        predictions = best_answers(data.examples, data.features, starts, ends, version_2=version_2)
        gold = {e.id: e.answers for e in data.examples}
        return squad_scores(predictions, gold), predictions


class LanguageModelTask:
    """Next-token prediction over packed blocks; perplexity."""

    name = "lm"

    def load(self, path: Path, tokenizer, max_length: int = 128, **_: Any) -> TaskData:
        blocks = pack_blocks(tokenizer.encode(read_text(path)).ids, max_length)
        return TaskData(list(blocks), [])

    def collate(self, data: TaskData, index: np.ndarray) -> dict[str, torch.Tensor]:
        blocks = torch.tensor(np.stack([data.features[i] for i in index]))
        return {"input_ids": blocks[:, :-1], "targets": blocks[:, 1:]}

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["input_ids"]).logits

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), batch["targets"].reshape(-1))

    def score(self, model: torch.nn.Module, data: TaskData, batch_size: int = 16) -> tuple[dict[str, float], None]:
        nll, tokens = 0.0, 0
        model.eval()
        with torch.no_grad():
            for first in range(0, len(data.features), batch_size):
                batch = self.collate(data, np.arange(first, min(first + batch_size, len(data.features))))
                logits = self.forward(model, batch)
                nll += float(
                    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), reduction="sum")
                )
                tokens += batch["targets"].numel()
        return {"perplexity": perplexity(nll, tokens), "tokens": tokens}, None


def get_task(name: str):
    if name in GLUE_TASKS:
        return ClassificationTask(name)
    if name == "squad":
        return SquadTask()
    if name == "lm":
        return LanguageModelTask()
    raise DataError(f"`task` must be one of {TASK_NAMES}, but got {name!r}.")
