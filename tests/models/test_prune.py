"""Structured pruning: unit importance is the gate derivative, and kept units compute what they did."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from canao.arch import ArchSpec, LayerSpec
from canao.errors import SpecError
from canao.models import build_model
from canao.models.prune import pruned_model, select_units, top_units, unit_importance

SPEC = ArchSpec("encoder", 41, 20, 16, (LayerSpec(4, 4, 24),) * 3)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(SPEC, "classification", num_labels=3)
    with torch.no_grad():  # non-trivial biases, so a wrong bias slice shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.3)
    return model.eval()


def _batch(seed: int, batch: int = 5, length: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 6:] = 0
    return {
        "input_ids": torch.randint(0, 41, (batch, length), generator=g),
        "attention_mask": mask,
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        "labels": torch.randint(0, 3, (batch,), generator=g),
    }


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    return F.cross_entropy(logits, batch["labels"])


def _gated_loss(model: torch.nn.Module, batch, layer: int, head=None, unit=None, scale: float = 1.0) -> float:
    """The loss with one head's (or FFN unit's) output multiplied by `scale`, by hooks on the real modules."""
    block = model.encoder.layers[layer]

    def gate_head(_module, args):
        (y,) = args
        y = y.clone()
        d = block.attn.head_dim
        y[..., head * d : (head + 1) * d] *= scale
        return (y,)

    def gate_unit(_module, args):
        (y,) = args
        y = y.clone()
        y[..., unit] *= scale
        return (y,)

    target, hook = (block.attn.out, gate_head) if head is not None else (block.ffn.down, gate_unit)
    handle = target.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            return float(_loss(model, batch).double())
    finally:
        handle.remove()


def test_importance_is_the_mean_absolute_gate_derivative():
    model = _model().double()
    batches = [_batch(1), _batch(2)]
    scores = unit_importance(model, _loss, batches)
    assert scores.batches == 2 and len(scores.heads) == 3 and scores.ffn[0].shape == (24,)
    eps = 1e-5
    for layer, head, unit in [(0, 2, 5), (2, 0, 17)]:
        for kind in ("head", "unit"):
            kw = {"head": head} if kind == "head" else {"unit": unit}
            derivative = [
                (_gated_loss(model, b, layer, scale=1 + eps, **kw) - _gated_loss(model, b, layer, scale=1 - eps, **kw))
                / (2 * eps)
                for b in batches
            ]
            expected = sum(abs(d) for d in derivative) / len(derivative)
            got = scores.heads[layer][head] if kind == "head" else scores.ffn[layer][unit]
            assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_keeping_every_unit_in_any_order_computes_the_same_function():
    model = _model()
    batch = _batch(3)
    same = select_units(model, [0, 1, 2], [[3, 1, 0, 2]] * 3, [list(range(23, -1, -1))] * 3)
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        got = same(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert same.encoder.spec == SPEC
    assert model.encoder.layers[0].attn.q.weight.shape == (16, 16)  # the source is untouched


def test_a_pruned_layer_equals_a_hand_built_one():
    model = _model()
    small = select_units(model, [2], [[1, 3]], [[0, 5, 7]])
    block, src = small.encoder.layers[0], model.encoder.layers[2]
    cols = [4, 5, 6, 7, 12, 13, 14, 15]
    torch.testing.assert_close(block.attn.k.weight, src.attn.k.weight[cols])
    torch.testing.assert_close(block.attn.v.bias, src.attn.v.bias[cols])
    torch.testing.assert_close(block.attn.out.weight, src.attn.out.weight[:, cols])
    torch.testing.assert_close(block.ffn.up.bias, src.ffn.up.bias[[0, 5, 7]])
    torch.testing.assert_close(block.ffn.down.weight, src.ffn.down.weight[:, [0, 5, 7]])
    assert small.encoder.spec.layers == (LayerSpec(2, 4, 3),)
    batch = _batch(4)
    with torch.no_grad():  # the layer runs: every shape in the module agrees with its weights
        out = small(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert out.shape == (5, 3) and torch.isfinite(out).all()


def test_pruned_model_keeps_the_highest_scoring_units():
    model = _model()
    scores = unit_importance(model, _loss, [_batch(5)])
    target = ArchSpec("encoder", 41, 20, 16, (LayerSpec(2, 4, 8),) * 2)
    small = pruned_model(model, target, scores, layers=[0, 2])
    assert small.encoder.spec == target
    best_heads = sorted(sorted(range(4), key=lambda h: -float(scores.heads[2][h]))[:2])
    d = 4
    cols = [h * d + i for h in best_heads for i in range(d)]
    torch.testing.assert_close(small.encoder.layers[1].attn.q.weight, model.encoder.layers[2].attn.q.weight[cols])
    best_units = sorted(sorted(range(24), key=lambda j: -float(scores.ffn[0][j]))[:8])
    torch.testing.assert_close(small.encoder.layers[0].ffn.up.weight, model.encoder.layers[0].ffn.up.weight[best_units])
    torch.testing.assert_close(small.classifier.weight, model.classifier.weight)


def test_top_units_and_bad_requests():
    assert top_units(torch.tensor([0.1, 3.0, 2.0, 3.0]), 2) == [1, 3]  # ties: the lower index first
    with pytest.raises(SpecError, match="cannot keep 5 of 4"):
        top_units(torch.zeros(4), 5)
    model = _model()
    with pytest.raises(SpecError, match="must lie in 0..2"):
        select_units(model, [3], [[0]], [[0]])
    scores = unit_importance(model, _loss, [_batch(6)])
    with pytest.raises(SpecError, match="2 layers but 3 teacher layers"):
        pruned_model(model, ArchSpec("encoder", 41, 20, 16, (LayerSpec(2, 4, 8),) * 2), scores, [0, 1, 2])
    with pytest.raises(SpecError, match="encoders"):
        unit_importance(build_model(ArchSpec("decoder", 41, 20, 16, (LayerSpec(4, 4, 24),)), "lm"), _loss, [])
