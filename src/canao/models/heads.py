"""Task heads on the encoder: sequence classification and extractive span QA; pooling.

Classification follows BERT's recipe: a linear layer on the pooled [CLS]
vector. Span QA predicts start and end logits per token with one linear
layer of two outputs (Devlin et al. 2019, Sec. 4.2). Mean pooling is the
sentence embedding of Sentence-BERT (Reimers & Gurevych 2019), which the
default teacher all-MiniLM-L6-v2 was trained with.

Example::

    model = build_model(spec, task="qa")
    start_logits, end_logits = model(input_ids, attention_mask)
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from canao.arch import ArchSpec
from canao.errors import SpecError
from canao.models.decoder import Decoder
from canao.models.encoder import Encoder

TASKS: tuple[str, ...] = ("backbone", "classification", "qa", "lm")


class EncoderForClassification(nn.Module):
    """Encoder + dropout + linear on the pooled output -> (B, num_labels) logits."""

    def __init__(self, spec: ArchSpec, num_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_labels < 1:
            raise SpecError(f"`num_labels >= 1` must hold, but got {num_labels=}.")
        self.encoder = Encoder(spec, dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(spec.hidden, num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        pooled = self.encoder(input_ids, attention_mask, token_type_ids).pooled
        return self.classifier(self.dropout(pooled))


class EncoderForQuestionAnswering(nn.Module):
    """Encoder + linear(hidden, 2) per token -> start and end logits, each (B, T)."""

    def __init__(self, spec: ArchSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = Encoder(spec, dropout, pooler=False)
        self.qa = nn.Linear(spec.hidden, 2)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.qa(hidden)  # (B, T, 2)
        return logits[..., 0], logits[..., 1]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the unpadded token vectors: (B, T, H), (B, T) -> (B, H)."""
    weights = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def build_model(spec: ArchSpec, task: str = "backbone", *, num_labels: int = 2, dropout: float = 0.0) -> nn.Module:
    """The PyTorch reference model for `spec` and `task` (backbone, classification, qa, lm)."""
    if task not in TASKS:
        raise SpecError(f"`task` must be one of {TASKS}, but got {task!r}.")
    if spec.kind == "decoder":
        if task not in ("backbone", "lm"):
            raise SpecError(f"a decoder supports task 'lm' only, but got task={task!r}.")
        return Decoder(spec, dropout)
    if task == "lm":
        raise SpecError("task 'lm' needs kind='decoder', but the spec is an encoder.")
    if task == "classification":
        return EncoderForClassification(spec, num_labels, dropout)
    if task == "qa":
        return EncoderForQuestionAnswering(spec, dropout)
    return Encoder(spec, dropout)


def backbone_of(model: nn.Module) -> nn.Module:
    """The Encoder/Decoder inside a task model (or the model itself)."""
    return getattr(model, "encoder", model)


def task_of(model: nn.Module) -> str:
    if isinstance(model, EncoderForClassification):
        return "classification"
    if isinstance(model, EncoderForQuestionAnswering):
        return "qa"
    if isinstance(model, Decoder):
        return "lm"
    return "backbone"
