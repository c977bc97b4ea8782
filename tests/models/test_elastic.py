"""Elastic slicing: a sliced model equals a model built directly with the sliced weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from canao.arch import ArchSpec, LayerSpec, SearchSpace
from canao.errors import SpecError
from canao.models import build_model, check_sliceable, extract_subnet, slice_state_dict
from canao.models.heads import mean_pool
from tests.hf_factories import perturb

BIG_ENC = ArchSpec("encoder", 53, 24, 32, (LayerSpec(4, 8, 48),) * 3)
BIG_DEC = ArchSpec("decoder", 53, 24, 32, (LayerSpec(4, 8, 48),) * 3)


def _manual_slice(model: torch.nn.Module, small: ArchSpec) -> dict[str, torch.Tensor]:
    """Independent re-derivation with explicit index lists (no shared code with elastic.py)."""
    big = model.spec if hasattr(model, "spec") else model.encoder.spec
    prefix = "" if hasattr(model, "spec") else "encoder."
    h = list(range(small.hidden))
    out: dict[str, torch.Tensor] = {}
    sd = model.state_dict()
    take = lambda t, *axes: t[np.ix_(*axes)] if len(axes) > 1 else t[axes[0]]  # noqa: E731
    for name, t in sd.items():
        parts = name[len(prefix) :].split(".") if name.startswith(prefix) else name.split(".")
        if parts[0] == "layers":
            i = int(parts[1])
            if i >= small.num_layers:
                continue
            b, s = big.layers[i], small.layers[i]
            a = [hh * b.head_dim + d for hh in range(s.heads) for d in range(s.head_dim)]
            f = list(range(s.ffn))
            module, param = ".".join(parts[2:-1]), parts[-1]
            rows_cols = {
                "attn.q": (a, h),
                "attn.k": (a, h),
                "attn.v": (a, h),
                "attn.out": (h, a),
                "ffn.up": (f, h),
                "ffn.down": (h, f),
                "attn_norm": (h,),
                "ffn_norm": (h,),
            }[module]
            out[name] = take(t, *rows_cols) if param == "weight" else t[rows_cols[0]]
        elif name.endswith("embed.token.weight"):
            out[name] = t[:, h]
        elif name.endswith("embed.position.weight"):
            out[name] = take(t, list(range(small.max_positions)), h)
        elif name.endswith("embed.token_type.weight"):
            out[name] = take(t, list(range(small.type_vocab_size)), h)
        elif name.endswith("pooler.weight"):
            out[name] = take(t, h, h)
        elif name.endswith(("classifier.weight", "qa.weight")):
            out[name] = t[:, h]
        elif name.endswith(("classifier.bias", "qa.bias")):
            out[name] = t
        else:  # LayerNorms and pooler bias
            out[name] = t[h]
    return out


def _run(model: torch.nn.Module, ids: torch.Tensor):
    out = model(ids)
    return out.logits if hasattr(out, "logits") else out


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_sliced_equals_directly_built(data):
    kind = data.draw(st.sampled_from(["encoder", "decoder"]))
    task = "lm" if kind == "decoder" else data.draw(st.sampled_from(["classification", "qa"]))
    big_spec = BIG_ENC if kind == "encoder" else BIG_DEC
    num_layers = data.draw(st.integers(1, 3))
    layers = tuple(
        LayerSpec(data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8)), data.draw(st.integers(1, 48)))
        for _ in range(num_layers)
    )
    small = ArchSpec(kind, 53, data.draw(st.integers(8, 24)), data.draw(st.integers(4, 32)), layers)
    torch.manual_seed(0)
    big = perturb(build_model(big_spec, task, num_labels=3))
    sliced = extract_subnet(big, small).eval()
    direct = build_model(small, task, num_labels=3).eval()
    direct.load_state_dict(_manual_slice(big, small))
    ids = torch.randint(0, 53, (2, min(7, small.max_positions)))
    with torch.no_grad():
        a, b = _run(sliced, ids), _run(direct, ids)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(x, y)


def test_full_slice_is_identity():
    big = perturb(build_model(BIG_ENC, "classification"))
    same = extract_subnet(big, BIG_ENC).eval()
    ids = torch.randint(0, 53, (1, 6))
    with torch.no_grad():
        assert torch.equal(big(ids), same(ids))


def test_gradients_flow_into_shared_weights():
    big = build_model(BIG_ENC)
    small_spec = ArchSpec("encoder", 53, 24, 16, (LayerSpec(2, 4, 20),) * 2)
    template = build_model(small_spec)
    params = slice_state_dict(dict(big.named_parameters()), BIG_ENC, small_spec)
    ids = torch.randint(0, 53, (2, 5))
    out = torch.func.functional_call(template, params, (ids,))
    mean_pool(out.last_hidden_state, torch.ones(2, 5)).sum().backward()
    q = big.layers[0].attn.q.weight.grad
    assert q is not None and q[:4, :16].abs().sum() > 0  # head 0, first 4 dims, first 16 hidden
    assert q[4:8].abs().sum() == 0  # dims 4..7 of head 0 are not in the subnet
    assert big.layers[2].attn.q.weight.grad is None  # layer 2 is not in the subnet


def test_not_sliceable_names_the_field():
    with pytest.raises(SpecError, match=r"small.layers\[0\].ffn <= big.layers\[0\].ffn"):
        check_sliceable(BIG_ENC, ArchSpec("encoder", 53, 24, 32, (LayerSpec(4, 8, 64),)))
    with pytest.raises(SpecError, match="`kind` must match"):
        check_sliceable(BIG_ENC, BIG_DEC)
    with pytest.raises(SpecError, match=r"small.hidden <= big.hidden"):
        check_sliceable(BIG_ENC, BIG_ENC.replace(hidden=40))


def test_search_space_members_slice_from_its_supernet():
    space = SearchSpace("encoder", 53, 24, (16, 32), (1, 2, 3), (2, 4), 8, (24, 48))
    supernet = build_model(space.largest())
    rng = np.random.default_rng(0)
    for _ in range(5):
        spec = space.sample(rng)
        assert space.contains(spec)
        sub = extract_subnet(supernet, spec)
        assert sum(p.numel() for p in sub.parameters()) == spec.num_params()
