"""BERT-style encoder built from an ArchSpec (Devlin et al. 2019).

Embeddings = LayerNorm(token + position + token type); each block is post-LN:
x = LN(x + Attn(x)); x = LN(x + FFN(x)); the pooler is tanh(W h_[CLS] + b).
Layers may differ in heads and FFN width (CANAO's heterogeneous space).

Example::

    spec = ArchSpec.uniform("encoder", vocab_size=30522, max_positions=512,
                            hidden=384, num_layers=6, heads=12)
    out = Encoder(spec)(input_ids, attention_mask)
    out.last_hidden_state  # (B, T, 384)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from canao.arch import ArchSpec, LayerSpec
from canao.errors import SpecError
from canao.models.blocks import FeedForward, MultiHeadAttention, padding_mask


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooled: Optional[torch.Tensor]  # (B, H); None without a pooler
    hidden_states: Optional[tuple[torch.Tensor, ...]] = None  # embeddings + each layer, (B, T, H)
    attentions: Optional[tuple[torch.Tensor, ...]] = None  # each layer, (B, nh, T, T)
    values: Optional[tuple[torch.Tensor, ...]] = None  # each layer's attention values, (B, nh, T, hd)


class EncoderEmbeddings(nn.Module):
    def __init__(self, spec: ArchSpec, dropout: float) -> None:
        super().__init__()
        self.token = nn.Embedding(spec.vocab_size, spec.hidden)
        self.position = nn.Embedding(spec.max_positions, spec.hidden)
        self.token_type = nn.Embedding(max(spec.type_vocab_size, 1), spec.hidden)
        self.norm = nn.LayerNorm(spec.hidden, eps=spec.norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.token(input_ids) + self.position(positions)[None] + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class EncoderLayer(nn.Module):
    """Post-LN transformer block (BERT)."""

    def __init__(self, hidden: int, layer: LayerSpec, spec: ArchSpec, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(hidden, layer.heads, layer.head_dim, dropout)
        self.attn_norm = nn.LayerNorm(hidden, eps=spec.norm_eps)
        self.ffn = FeedForward(hidden, layer.ffn, spec.activation)
        self.ffn_norm = nn.LayerNorm(hidden, eps=spec.norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (output, attention probabilities, attention values)."""
        attn_out, (_, values), probs = self.attn(x, mask)
        x = self.attn_norm(x + self.dropout(attn_out))
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))
        return x, probs, values


class Encoder(nn.Module):
    """The encoder backbone, with BERT's pooler unless `pooler=False` (span QA has none)."""

    def __init__(self, spec: ArchSpec, dropout: float = 0.0, pooler: bool = True) -> None:
        super().__init__()
        if spec.kind != "encoder":
            raise SpecError(f"Encoder needs an ArchSpec with kind='encoder', but got kind={spec.kind!r}.")
        self.spec = spec
        self.embed = EncoderEmbeddings(spec, dropout)
        self.layers = nn.ModuleList(EncoderLayer(spec.hidden, layer, spec, dropout) for layer in spec.layers)
        self.pooler = nn.Linear(spec.hidden, spec.hidden) if pooler else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        output_values: bool = False,
    ) -> EncoderOutput:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embed(input_ids, token_type_ids)  # (B, T, H)
        mask = None if attention_mask is None else padding_mask(attention_mask, x.dtype)
        hidden_states, attentions, values = [x], [], []
        for layer in self.layers:
            x, probs, v = layer(x, mask)
            hidden_states.append(x)
            attentions.append(probs)
            values.append(v)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return EncoderOutput(
            last_hidden_state=x,
            pooled=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            values=tuple(values) if output_values else None,
        )
