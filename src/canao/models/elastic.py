"""Elastic slicing: any smaller ArchSpec's weights are the leading slices of a larger model's.

This is the weight sharing of CANAO's supernet (arXiv 2009.06823, Sec. 3.2,
after Once-for-All/HAT): a sub-network keeps the first `layers`, the leading
`hidden` dimensions of every embedding/LayerNorm/projection, the leading
`heads` (and the leading `head_dim` entries of each head) of every attention
block and the leading `ffn` units of every FFN. The slicing ops are plain
tensor indexing, so gradients flow back into the shared weights when the
sliced tensors are used with `torch.func.functional_call`.

Example::

    small = extract_subnet(teacher, small_spec)          # an independent copy
    params = slice_state_dict(dict(big.named_parameters()), big_spec, small_spec)
    out = torch.func.functional_call(small_template, params, (input_ids,))  # shares weights
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from canao.arch import ArchSpec, LayerSpec
from canao.errors import SpecError
from canao.models.heads import backbone_of, build_model, task_of

# Per parameter (matched on its name's ending), the role of each axis:
#   H hidden, A attention width (heads x head_dim), F FFN units,
#   P positions, T token types, "-" kept whole (vocab, labels, start/end).
_AXIS_ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"embed\.token\.weight$", ("-", "H")),
    (r"embed\.position\.weight$", ("P", "H")),
    (r"embed\.token_type\.weight$", ("T", "H")),
    (r"norm\.(weight|bias)$", ("H",)),
    (r"attn\.[qkv]\.weight$", ("A", "H")),
    (r"attn\.[qkv]\.bias$", ("A",)),
    (r"attn\.out\.weight$", ("H", "A")),
    (r"attn\.out\.bias$", ("H",)),
    (r"ffn\.up\.weight$", ("F", "H")),
    (r"ffn\.up\.bias$", ("F",)),
    (r"ffn\.down\.weight$", ("H", "F")),
    (r"ffn\.down\.bias$", ("H",)),
    (r"pooler\.weight$", ("H", "H")),
    (r"pooler\.bias$", ("H",)),
    (r"(classifier|qa)\.weight$", ("-", "H")),
    (r"(classifier|qa)\.bias$", ("-",)),
)
_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def check_sliceable(big: ArchSpec, small: ArchSpec) -> None:
    """Raise SpecError naming the first field in which `small` is not a slice of `big`."""
    for name in ("kind", "vocab_size", "activation", "norm_eps"):
        if getattr(big, name) != getattr(small, name):
            raise SpecError(
                f"`{name}` must match to slice, but got big={getattr(big, name)!r}, small={getattr(small, name)!r}."
            )
    for name in ("hidden", "max_positions", "type_vocab_size", "num_layers"):
        if getattr(small, name) > getattr(big, name):
            raise SpecError(
                f"`small.{name} <= big.{name}` must hold, but got ({getattr(small, name)} > {getattr(big, name)})."
            )
    for i, (b, s) in enumerate(zip(big.layers, small.layers)):
        for name in ("heads", "head_dim", "ffn"):
            if getattr(s, name) > getattr(b, name):
                raise SpecError(
                    f"`small.layers[{i}].{name} <= big.layers[{i}].{name}` must hold, "
                    f"but got ({getattr(s, name)} > {getattr(b, name)})."
                )


def roles_of(name: str) -> tuple[str, ...]:
    for pattern, roles in _AXIS_ROLES:
        if re.search(pattern, name):
            return roles
    raise SpecError(f"parameter `{name}` has no slicing rule; elastic slicing knows only canao's model layout.")


def _slice_heads(t: torch.Tensor, axis: int, big: LayerSpec, small: LayerSpec) -> torch.Tensor:
    """Keep the leading heads, and the leading head_dim entries within each head, along `axis`."""
    split = t.unflatten(axis, (big.heads, big.head_dim))
    index = [slice(None)] * split.dim()
    index[axis], index[axis + 1] = slice(0, small.heads), slice(0, small.head_dim)
    return split[tuple(index)].flatten(axis, axis + 1)


def _slice_tensor(name: str, t: torch.Tensor, big: ArchSpec, small: ArchSpec) -> torch.Tensor:
    roles = roles_of(name)
    if len(roles) != t.dim():
        raise SpecError(f"parameter `{name}` has {t.dim()} axes, but its slicing rule expects {len(roles)}.")
    match = _LAYER_INDEX.search(name)
    layer_big = big.layers[int(match.group(1))] if match else None
    layer_small = small.layers[int(match.group(1))] if match else None
    limits = {
        "H": small.hidden,
        "P": small.max_positions,
        "T": max(small.type_vocab_size, 1),
        "F": layer_small.ffn if layer_small else None,
    }
    for axis, role in enumerate(roles):
        if role == "A":
            t = _slice_heads(t, axis, layer_big, layer_small)
        elif role != "-":
            t = t.narrow(axis, 0, limits[role])
    return t


def slice_state_dict(state: Mapping[str, torch.Tensor], big: ArchSpec, small: ArchSpec) -> dict[str, torch.Tensor]:
    """The state dict of `small` cut from the state dict of a model of spec `big` (differentiable)."""
    check_sliceable(big, small)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        match = _LAYER_INDEX.search(name)
        if match and int(match.group(1)) >= small.num_layers:
            continue  # layers past the small model's depth are dropped
        out[name] = _slice_tensor(name, tensor, big, small)
    return out


def extract_subnet(model: nn.Module, small: ArchSpec) -> nn.Module:
    """A new, independent model of spec `small` (same task head) holding the leading weights of `model`."""
    big = backbone_of(model).spec
    task = task_of(model)
    num_labels = model.classifier.out_features if task == "classification" else 2
    sub = build_model(small, task, num_labels=num_labels)
    sliced = slice_state_dict(model.state_dict(), big, small)
    sub.load_state_dict({k: v.detach().clone() for k, v in sliced.items()})
    return sub
