"""Distillation losses on tiny tensors against values computed by hand (in float64; the losses run in float32,
whose vectorised log/exp differ by ~1e-6 relative between CPUs, hence rel=1e-5)."""

from __future__ import annotations

import math

import pytest
import torch

from canao.train.losses import attention_kl, hidden_mse, soft_logit_loss, value_relation_kl


def test_soft_logit_loss_is_t_squared_kl():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # teacher p = (3/4, 1/4)
    # T = 1: KL((3/4, 1/4) || (1/2, 1/2)) = 3/4 ln(3/2) + 1/4 ln(1/2)
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(soft_logit_loss(student, teacher, 1.0)) == pytest.approx(want, rel=1e-5)
    # T = 2: teacher logits halved -> p = (sqrt3, 1)/(sqrt3 + 1); times T^2 = 4
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    want2 = 4 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)))
    assert float(soft_logit_loss(student, teacher, 2.0)) == pytest.approx(want2, rel=1e-5)
    # a masked row does not count
    rows = torch.cat([student, torch.tensor([[5.0, -5.0]])]), torch.cat([teacher, teacher])
    assert float(soft_logit_loss(*rows, 1.0, mask=torch.tensor([1.0, 0.0]))) == pytest.approx(want, rel=1e-5)


def test_hidden_mse_projects_then_averages_unmasked_tokens():
    projection = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0], [2.0]]))
    student = torch.tensor([[[1.0], [3.0]]])  # (B=1, T=2, 1) -> projected (1, 2) and (3, 6)
    teacher = torch.tensor([[[0.0, 0.0], [3.0, 6.0]]])
    assert float(hidden_mse(student, teacher, projection).detach()) == pytest.approx((1 + 4 + 0 + 0) / 4)
    mask = torch.tensor([[0, 1]])
    assert float(hidden_mse(student, teacher, projection, mask).detach()) == pytest.approx(0.0)


def test_attention_kl_averages_heads_when_counts_differ():
    teacher = torch.tensor([[[[0.5, 0.5]], [[1.0, 0.0]]]])  # (B=1, heads=2, T=1, S=2): mean (3/4, 1/4)
    student = torch.tensor([[[[0.5, 0.5]]]])  # one head
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(attention_kl(student, teacher)) == pytest.approx(want, rel=1e-5)


def test_value_relation_kl_by_hand():
    # One head of dim 1, two tokens: v = (1, 0) -> scores v v^T / sqrt(1) = [[1, 0], [0, 0]].
    teacher = torch.tensor([[[[1.0], [0.0]]]])
    student = torch.tensor([[[[0.0], [0.0]]]])  # relations uniform (1/2, 1/2) for both rows
    e = math.e
    row0 = (e / (e + 1)) * math.log(2 * e / (e + 1)) + (1 / (e + 1)) * math.log(2 / (e + 1))
    row1 = 0.0  # teacher row 1 is uniform too
    assert float(value_relation_kl(student, teacher, 1)) == pytest.approx((row0 + row1) / 2, rel=1e-5)
    # a padded key leaves each remaining row with one key: no divergence at all, and no NaN
    mask = torch.tensor([[1, 0]])
    assert float(value_relation_kl(student, teacher, 1, mask)) == pytest.approx(0.0, abs=1e-7)


def test_value_relations_compare_different_head_counts_through_relation_heads():
    torch.manual_seed(0)
    teacher = torch.randn(2, 12, 5, 32)  # width 384
    student = torch.randn(2, 4, 5, 32)  # width 128
    same = value_relation_kl(teacher[:, :, :, :], teacher, 4)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    assert float(value_relation_kl(student, teacher, 4)) > 0
    with pytest.raises(ValueError, match="must divide"):
        value_relation_kl(student, teacher, 5)
