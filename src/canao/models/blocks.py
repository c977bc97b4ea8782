"""Building blocks shared by the encoder and the decoder: attention, FFN, GELU, masks.

Multi-head attention follows "Attention Is All You Need" (Vaswani et al.
2017, Eq. 1): softmax(Q K^T / sqrt(head_dim) + mask) V, with the heads
concatenated and projected back to `hidden`. The attention width
`heads * head_dim` may differ from `hidden` (CANAO's heterogeneous space).

Example::

    attn = MultiHeadAttention(hidden=384, heads=12, head_dim=32)
    y, kv, probs = attn(torch.randn(1, 16, 384))
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]  # keys and values, each (B, nh, S, hd)


def gelu(x: torch.Tensor, form: str) -> torch.Tensor:
    """GELU in BERT's exact erf form ("gelu") or GPT-2's tanh polynomial form ("gelu_tanh")."""
    if form == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), Hendrycks & Gimpel 2016.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1/0 keep mask -> (B, 1, 1, S) additive mask: 0 where kept, the dtype's minimum where padded."""
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


def causal_mask(query_len: int, past_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(T, past+T) additive mask: query i (absolute position past+i) sees keys 0..past+i."""
    total = past_len + query_len
    allowed = torch.ones(query_len, total, dtype=torch.bool, device=device).tril(diagonal=past_len)
    return torch.zeros(query_len, total, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


class MultiHeadAttention(nn.Module):
    """Self-attention with separate Q, K, V projections (merged only by the compiler)."""

    def __init__(self, hidden: int, heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        width = heads * head_dim
        self.q = nn.Linear(hidden, width)
        self.k = nn.Linear(hidden, width)
        self.v = nn.Linear(hidden, width)
        self.out = nn.Linear(width, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        past: Optional[KV] = None,
    ) -> tuple[torch.Tensor, KV, torch.Tensor]:
        """x (B, T, hidden) -> (output (B, T, hidden), keys/values incl. past, probs (B, nh, T, S))."""
        b, t, _ = x.shape
        shape = (b, t, self.heads, self.head_dim)
        q = self.q(x).view(shape).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k(x).view(shape).transpose(1, 2)
        v = self.v(x).view(shape).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nh, S, hd), S = past + T
            v = torch.cat([past[1], v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim**-0.5)  # (B, nh, T, S)
        if mask is not None:
            scores = scores + mask
        probs = F.softmax(scores, dim=-1)
        y = torch.matmul(self.dropout(probs), v)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.out(y), (k, v), probs


class FeedForward(nn.Module):
    """Position-wise FFN: down(gelu(up(x)))."""

    def __init__(self, hidden: int, ffn: int, activation: str) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, ffn)
        self.down = nn.Linear(ffn, hidden)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(gelu(self.up(x), self.activation))
