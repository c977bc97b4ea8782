"""Decoder parity with transformers' GPT-2, KV-cache decoding, heterogeneous layers."""

from __future__ import annotations

import pytest
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.models import Decoder, KVCache, load_pretrained
from canao.models.blocks import causal_mask
from tests.hf_factories import hf_gpt2, perturb

TOL = 1e-4
SHAPES = [(32, 2, 4, None), (48, 3, 6, 100), (36, 1, 3, 50)]  # (hidden, layers, heads, n_inner)


@pytest.mark.parametrize("hidden,layers,heads,ffn", SHAPES)
def test_logits_match_gpt2(tmp_path, hidden, layers, heads, ffn):
    hf = hf_gpt2(hidden=hidden, layers=layers, heads=heads, ffn=ffn)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    assert ours.task == "lm" and ours.spec.kind == "decoder"
    ids = torch.randint(0, 101, (2, 13))
    with torch.no_grad():
        got = ours.model(ids, output_hidden_states=True)
        want = hf(ids, output_hidden_states=True)
    assert float((got.logits - want.logits).abs().max()) < TOL
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert float((a - b).abs().max()) < TOL


@pytest.mark.parametrize("hidden,layers,heads,ffn", SHAPES)
def test_kv_cache_decoding_equals_full_recompute(hidden, layers, heads, ffn):
    spec = ArchSpec.uniform(
        "decoder", vocab_size=101, max_positions=48, hidden=hidden, num_layers=layers, heads=heads, ffn=ffn
    )
    model = perturb(Decoder(spec))
    ids = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :5])  # prefill
        steps = [out.logits]
        cache = out.cache
        for t in range(5, 12):  # one token at a time
            out = model(ids[:, t : t + 1], cache=cache)
            cache = out.cache
            steps.append(out.logits)
    assert cache.length == 12
    assert float((torch.cat(steps, dim=1) - full).abs().max()) < TOL


def test_matches_gpt2_incremental_decoding(tmp_path):
    hf = hf_gpt2(hidden=32, layers=2, heads=4)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).model
    ids = torch.randint(0, 101, (1, 9))
    with torch.no_grad():
        want = hf(ids[:, :6], use_cache=True)
        want2 = (
            hf(ids[:, 6:], cache=want.past_key_values)
            if _takes_cache(hf)
            else hf(ids[:, 6:], past_key_values=want.past_key_values)
        )
        got = ours(ids[:, :6])
        got2 = ours(ids[:, 6:], cache=got.cache)
    assert float((got2.logits - want2.logits).abs().max()) < TOL


def _takes_cache(hf) -> bool:
    import inspect

    return "cache" in inspect.signature(hf.forward).parameters


def test_context_longer_than_max_positions_is_refused():
    spec = ArchSpec.uniform("decoder", vocab_size=11, max_positions=4, hidden=8, num_layers=1, heads=2)
    model = Decoder(spec)
    out = model(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.zeros(1, 2, dtype=torch.long), cache=out.cache)
    assert isinstance(out.cache, KVCache)


def _hf_block_like(hidden: int, layer: LayerSpec, eps: float) -> torch.nn.Module:
    """A transformers GPT2Block re-shaped to `layer` (attention width may differ from hidden)."""
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block
    from transformers.pytorch_utils import Conv1D

    config = GPT2Config(n_embd=hidden, n_head=1, n_inner=layer.ffn, layer_norm_epsilon=eps)
    config._attn_implementation = "eager"
    block = GPT2Block(config, layer_idx=0)
    attn = block.attn
    attn.num_heads, attn.head_dim, attn.split_size = layer.heads, layer.head_dim, layer.attn_width
    attn.scaling = layer.head_dim**-0.5
    attn.c_attn = Conv1D(3 * layer.attn_width, hidden)
    attn.c_proj = Conv1D(hidden, layer.attn_width)
    return perturb(block)


def test_heterogeneous_decoder_layer_by_layer():
    spec = ArchSpec("decoder", 101, 48, 40, (LayerSpec(2, 24, 70), LayerSpec(6, 4, 16), LayerSpec(3, 9, 161)))
    model = perturb(Decoder(spec))
    ids = torch.randint(0, 101, (2, 10))
    mask = causal_mask(10, 0, torch.float32, torch.device("cpu"))[None, None]
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        x = out.hidden_states[0]
        for i, (ours, layer) in enumerate(zip(model.layers, spec.layers)):
            hf = _hf_block_like(spec.hidden, layer, spec.norm_eps)
            a = ours.attn
            hf.load_state_dict(
                {
                    "ln_1.weight": ours.attn_norm.weight,
                    "ln_1.bias": ours.attn_norm.bias,
                    "ln_2.weight": ours.ffn_norm.weight,
                    "ln_2.bias": ours.ffn_norm.bias,
                    "attn.c_attn.weight": torch.cat([a.q.weight, a.k.weight, a.v.weight]).T,
                    "attn.c_attn.bias": torch.cat([a.q.bias, a.k.bias, a.v.bias]),
                    "attn.c_proj.weight": a.out.weight.T,
                    "attn.c_proj.bias": a.out.bias,
                    "mlp.c_fc.weight": ours.ffn.up.weight.T,
                    "mlp.c_fc.bias": ours.ffn.up.bias,
                    "mlp.c_proj.weight": ours.ffn.down.weight.T,
                    "mlp.c_proj.bias": ours.ffn.down.bias,
                },
                strict=False,
            )
            want = hf(x, attention_mask=mask)
            want = want[0] if isinstance(want, tuple) else want
            ours_out, _, _ = ours(x, mask[0, 0], None)
            assert float((ours_out - want).abs().max()) < TOL, f"layer {i}"
            x = ours_out
        assert float((model.final_norm(x) - out.hidden_states[-1]).abs().max()) < TOL
