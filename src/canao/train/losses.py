"""Knowledge-distillation losses (Hinton et al. 2015; TinyBERT, Jiao et al. 2020; MiniLM, Wang et al. 2020).

- soft logits: T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over rows;
- hidden states: MSE between the student's hidden states, mapped by a learned
  linear projection to the teacher's width, and the teacher's;
- attention: KL between teacher and student attention distributions over the
  keys, per query row, head-averaged when head counts differ, padded queries
  ignored.

Example::

    loss = soft_logit_loss(student_logits, teacher_logits, temperature=2.0)
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def soft_logit_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Rows are the leading dims, classes the last; `mask` (same leading shape) keeps some rows only."""
    t = temperature
    log_p_s = F.log_softmax(student / t, dim=-1)
    p_t = F.softmax(teacher / t, dim=-1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_p_s)).sum(-1)  # (rows...)
    if mask is not None:
        return (kl * mask).sum() / mask.sum().clamp_min(1) * t * t
    return kl.mean() * t * t


def hidden_mse(
    student: torch.Tensor, teacher: torch.Tensor, projection: torch.nn.Module, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """MSE of projection(student) vs teacher over (B, T, H) tokens (padded tokens masked out)."""
    diff = (projection(student) - teacher) ** 2
    if mask is not None:
        m = mask[..., None].to(diff.dtype)
        return (diff * m).sum() / (m.sum() * diff.shape[-1]).clamp_min(1)
    return diff.mean()


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """KL(teacher || student) of attention rows; inputs (B, heads, T, S), head-averaged if counts differ."""
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - torch.log(student.clamp_min(1e-12)))).sum(-1)  # (B, h, T)
    if mask is not None:
        m = mask[:, None, :].to(kl.dtype)
        return (kl * m).sum() / (m.sum() * kl.shape[1]).clamp_min(1)
    return kl.mean()
