"""Structured pruning of a fine-tuned encoder: keep the most important heads and FFN units of chosen layers.

A student cut from the teacher by elastic slicing (models/elastic.py) keeps the *leading* heads and FFN
units and the *first* layers, which in a fine-tuned model are no more important than any others. Pruning
keeps the units that matter instead, from teacher layers the caller picks (distillation takes evenly
spread ones: train/distill.py `pruned_student`) (Michel et al. 2019, "Are Sixteen Heads Really Better than One?";
DynaBERT's network rewiring, Hou et al. 2020), so the student starts far closer to its teacher:

    importance of a unit = E_batches |dL/d xi|,  xi a gate multiplying the unit's output (xi = 1)

which is the first-order estimate of the loss change when the unit is removed. The gate of head h sits on
the head's slice of the attention output projection's input, and that of FFN unit j on column j of the
down-projection, so dL/d xi = sum over those weight entries of W * dL/dW: plain weight gradients of the
task loss, no hooks or model changes.

`select_units` then builds the smaller model from chosen teacher layers and, per layer, the chosen heads
and units (kept in their original order, so a layer keeping all of them is the teacher's layer exactly).

Example::

    scores = unit_importance(model, lambda m, b: task.loss(task.forward(m, b), b), batches)
    student = pruned_model(model, student_spec, scores, layers=[1, 3, 5])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from canao.arch import ArchSpec
from canao.errors import SpecError
from canao.models.elastic import extract_subnet
from canao.models.heads import backbone_of


@dataclass(frozen=True)
class UnitImportance:
    """Per teacher layer, one score per attention head and one per FFN unit (higher: keep)."""

    heads: tuple[torch.Tensor, ...]
    ffn: tuple[torch.Tensor, ...]
    batches: int


def encoder_spec(model: nn.Module) -> ArchSpec:
    """The ArchSpec of a canao encoder (task model or backbone); other models are refused."""
    spec = getattr(backbone_of(model), "spec", None)
    if not isinstance(spec, ArchSpec) or spec.kind != "encoder":
        raise SpecError("structured pruning covers canao encoders (classification, QA or backbone models).")
    return spec


def _encoder_layers(model: nn.Module) -> list[Any]:
    encoder_spec(model)
    return list(backbone_of(model).layers)


def unit_importance(
    model: nn.Module, loss_fn: Callable[[nn.Module, dict], torch.Tensor], batches: Iterable[dict]
) -> UnitImportance:
    """E_batches |dL/d gate| of every head and FFN unit of `model` (in eval mode: no dropout noise)."""
    layers = _encoder_layers(model)
    was_training = model.training
    model.eval()
    heads = [torch.zeros(layer.attn.heads, dtype=torch.float64) for layer in layers]
    ffn = [torch.zeros(layer.ffn.down.in_features, dtype=torch.float64) for layer in layers]
    count = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        with torch.no_grad():
            for i, layer in enumerate(layers):
                out = layer.attn.out.weight  # (hidden, heads * head_dim)
                per_column = (out * out.grad).sum(0).double()
                heads[i] += per_column.view(layer.attn.heads, layer.attn.head_dim).sum(1).abs()
                down = layer.ffn.down.weight  # (hidden, ffn)
                ffn[i] += (down * down.grad).sum(0).double().abs()
        count += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if not count:
        raise SpecError("unit_importance needs at least one batch of training data.")
    return UnitImportance(tuple(h / count for h in heads), tuple(f / count for f in ffn), count)


def top_units(scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the `keep` highest scores, in ascending index order (ties: the lower index)."""
    if not 0 < keep <= scores.numel():
        raise SpecError(f"cannot keep {keep} of {scores.numel()} units; keep between 1 and {scores.numel()}.")
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:keep])


def select_units(
    model: nn.Module, layers: Sequence[int], heads: Sequence[Sequence[int]], ffn: Sequence[Sequence[int]]
) -> nn.Module:
    """A copy of `model` holding teacher layers `layers` (in that order), each with the given heads and units."""
    blocks = _encoder_layers(model)
    spec = encoder_spec(model)
    if not len(layers) == len(heads) == len(ffn) or not layers:
        raise SpecError("select_units needs one head list and one FFN-unit list per kept layer.")
    if any(not 0 <= k < len(blocks) for k in layers):
        raise SpecError(f"kept layers {list(layers)} must lie in 0..{len(blocks) - 1}.")
    # The memo stands an empty list in for the teacher's layer list, so only the kept layers are copied (below).
    small = copy.deepcopy(model, memo={id(backbone_of(model).layers): nn.ModuleList()})
    new_layers = []
    for k, head_index, unit_index in zip(layers, heads, ffn):
        block = copy.deepcopy(blocks[k])
        attn, dim = block.attn, block.attn.head_dim
        columns = torch.tensor([h * dim + d for h in head_index for d in range(dim)], dtype=torch.long)
        units = torch.tensor(list(unit_index), dtype=torch.long)
        with torch.no_grad():
            for proj in (attn.q, attn.k, attn.v):
                proj.weight = nn.Parameter(proj.weight[columns].clone())
                proj.bias = nn.Parameter(proj.bias[columns].clone())
                proj.out_features = len(columns)
            attn.out.weight = nn.Parameter(attn.out.weight[:, columns].clone())
            attn.out.in_features = len(columns)
            attn.heads = len(head_index)
            up, down = block.ffn.up, block.ffn.down
            up.weight, up.bias = nn.Parameter(up.weight[units].clone()), nn.Parameter(up.bias[units].clone())
            up.out_features = len(units)
            down.weight = nn.Parameter(down.weight[:, units].clone())
            down.in_features = len(units)
        new_layers.append(block)
    layer_specs = tuple(replace(spec.layers[k], heads=len(h), ffn=len(f)) for k, h, f in zip(layers, heads, ffn))
    backbone: Any = backbone_of(small)
    backbone.layers = nn.ModuleList(new_layers)
    backbone.spec = replace(spec, layers=layer_specs)
    return small


def pruned_model(model: nn.Module, target: ArchSpec, scores: UnitImportance, layers: Sequence[int]) -> nn.Module:
    """The model of spec `target` made of teacher layers `layers` with their most important heads and units.

    `target` may also be narrower in hidden size or head_dim than the teacher: those keep their leading
    entries, as in elastic slicing (importance ordering covers heads, FFN units and layers)."""
    if len(layers) != target.num_layers:
        raise SpecError(f"the target has {target.num_layers} layers but {len(layers)} teacher layers were chosen.")
    heads = [top_units(scores.heads[k], s.heads) for k, s in zip(layers, target.layers)]
    ffn = [top_units(scores.ffn[k], s.ffn) for k, s in zip(layers, target.layers)]
    chosen = select_units(model, layers, heads, ffn)
    return extract_subnet(chosen, target)
