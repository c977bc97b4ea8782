"""Rank agreement: how well one score (inherited supernet accuracy) orders members like another (accuracy
after stand-alone distillation). Kendall's tau-b, which allows ties (accuracies on a dev set often tie).

Example::

    kendall_tau([0.81, 0.84, 0.86], [0.83, 0.85, 0.88])   # 1.0: the same order
"""

from __future__ import annotations

import math
from typing import Sequence

from canao.errors import SpecError


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences (1: same order, -1: reversed, 0: unrelated)."""
    if len(a) != len(b) or len(a) < 2:
        raise SpecError(f"need two sequences of the same length >= 2, got {len(a)} and {len(b)}.")
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator else 0.0
