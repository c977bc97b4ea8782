"""GPT-2-style decoder built from an ArchSpec (Radford et al. 2019), with a KV cache.

x = token + position embeddings; each block is pre-LN:
x = x + Attn(LN(x)) (causal); x = x + FFN(LN(x)); logits = LN_f(x) W_tok^T
(the LM head is tied to the token embedding). The KV cache stores each layer's
keys and values so that a decode step costs O(context) instead of O(context^2).

Example::

    model = Decoder(ArchSpec.uniform("decoder", vocab_size=50257, max_positions=1024,
                                     hidden=768, num_layers=12, heads=12))
    out = model(prompt_ids)                      # prefill
    step = model(next_id[:, None], cache=out.cache)  # one decode step
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from canao.arch import ArchSpec, LayerSpec
from canao.errors import SpecError
from canao.models.blocks import KV, FeedForward, MultiHeadAttention, causal_mask


@dataclass
class KVCache:
    """Per-layer keys and values, each (B, nh, S, hd); `length` is S."""

    layers: list[KV] = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.layers else int(self.layers[0][0].shape[2])


@dataclass
class DecoderOutput:
    logits: torch.Tensor  # (B, T, vocab)
    cache: KVCache
    hidden_states: Optional[tuple[torch.Tensor, ...]] = None  # embeddings + each layer (last one after LN_f)
    attentions: Optional[tuple[torch.Tensor, ...]] = None  # each layer, (B, nh, T, S)


class DecoderLayer(nn.Module):
    """Pre-LN transformer block (GPT-2)."""

    def __init__(self, hidden: int, layer: LayerSpec, spec: ArchSpec, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden, eps=spec.norm_eps)
        self.attn = MultiHeadAttention(hidden, layer.heads, layer.head_dim, dropout)
        self.ffn_norm = nn.LayerNorm(hidden, eps=spec.norm_eps)
        self.ffn = FeedForward(hidden, layer.ffn, spec.activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past: Optional[KV]) -> tuple[torch.Tensor, KV, torch.Tensor]:
        attn_out, kv, probs = self.attn(self.attn_norm(x), mask, past)
        x = x + self.dropout(attn_out)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, kv, probs


class DecoderEmbeddings(nn.Module):
    def __init__(self, spec: ArchSpec, dropout: float) -> None:
        super().__init__()
        self.token = nn.Embedding(spec.vocab_size, spec.hidden)
        self.position = nn.Embedding(spec.max_positions, spec.hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, past_len: int) -> torch.Tensor:
        positions = torch.arange(past_len, past_len + input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.token(input_ids) + self.position(positions)[None])


class Decoder(nn.Module):
    """The decoder with its tied LM head."""

    def __init__(self, spec: ArchSpec, dropout: float = 0.0) -> None:
        super().__init__()
        if spec.kind != "decoder":
            raise SpecError(f"Decoder needs an ArchSpec with kind='decoder', but got kind={spec.kind!r}.")
        self.spec = spec
        self.embed = DecoderEmbeddings(spec, dropout)
        self.layers = nn.ModuleList(DecoderLayer(spec.hidden, layer, spec, dropout) for layer in spec.layers)
        self.final_norm = nn.LayerNorm(spec.hidden, eps=spec.norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        cache: Optional[KVCache] = None,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> DecoderOutput:
        """input_ids (B, T) continuing the cached context -> logits (B, T, vocab) and the grown cache."""
        past_len = 0 if cache is None else cache.length
        if past_len + input_ids.shape[1] > self.spec.max_positions:
            raise SpecError(
                f"`past + new tokens <= max_positions` must hold, but got "
                f"({past_len} + {input_ids.shape[1]} > {self.spec.max_positions})."
            )
        x = self.embed(input_ids, past_len)  # (B, T, H)
        mask = causal_mask(input_ids.shape[1], past_len, x.dtype, x.device)
        new_cache, hidden_states, attentions = KVCache(), [x], []
        for i, layer in enumerate(self.layers):
            past = None if cache is None else cache.layers[i]
            x, kv, probs = layer(x, mask, past)
            new_cache.layers.append(kv)
            hidden_states.append(x)
            attentions.append(probs)
        x = self.final_norm(x)
        hidden_states[-1] = x
        logits = torch.matmul(x, self.embed.token.weight.T)  # tied LM head, (B, T, vocab)
        return DecoderOutput(
            logits=logits,
            cache=new_cache,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
