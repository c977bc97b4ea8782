"""Knowledge-distillation losses (Hinton et al. 2015; TinyBERT, Jiao et al. 2020; MiniLM, Wang et al. 2020).

- soft logits: T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over rows;
- hidden states: MSE between the student's hidden states, mapped by a learned
  linear projection to the teacher's width, and the teacher's;
- attention: KL between teacher and student attention distributions over the
  keys, per query row, head-averaged when head counts differ, padded queries
  ignored;
- value relation (MiniLM; with relation heads as in MiniLMv2): the attention
  values of all heads are concatenated and split into R relation heads; each
  gives a token-token relation softmax(V_r V_r^T / sqrt(d_r)); KL(teacher ||
  student) per row. Works across different head counts and widths when R
  divides both attention widths.

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


def value_relation_kl(
    student: torch.Tensor, teacher: torch.Tensor, relation_heads: int, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """KL of teacher vs student value-value relations; inputs (B, heads, T, head_dim) each, R relation heads."""
    rel_s, rel_t = _relations(student, relation_heads, mask), _relations(teacher, relation_heads, mask)
    terms = rel_t.exp() * (rel_t - rel_s)  # (B, R, T, T)
    if mask is not None:  # padded keys carry no mass in either relation: no term at all (never inf - inf)
        terms = terms.masked_fill(mask[:, None, None, :] == 0, 0.0)
    kl = terms.sum(-1)  # (B, R, T)
    if mask is not None:
        m = mask[:, None, :].to(kl.dtype)
        return (kl * m).sum() / (m.sum() * kl.shape[1]).clamp_min(1)
    return kl.mean()


def _relations(values: torch.Tensor, relation_heads: int, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """log softmax(V_r V_r^T / sqrt(d_r)) over keys, (B, R, T, T); padded keys get no mass."""
    b, h, t, d = values.shape
    width = h * d
    if width % relation_heads:
        raise ValueError(f"relation_heads={relation_heads} must divide the attention width {width}.")
    v = values.transpose(1, 2).reshape(b, t, relation_heads, width // relation_heads).transpose(1, 2)
    scores = torch.matmul(v, v.transpose(-1, -2)) / (width // relation_heads) ** 0.5  # (B, R, T, T)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)
