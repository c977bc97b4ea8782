"""Random search: every decision drawn uniformly and independently (the baseline the others must beat).

Example::

    controller = RandomController((3, 5, 4, 4), seed=0)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from canao.search.controllers.base import Decisions


class RandomController:
    name = "random"

    def __init__(self, counts: Sequence[int], seed: int = 0) -> None:
        self.counts = tuple(int(c) for c in counts)
        self.rng = np.random.default_rng(seed)

    def ask(self) -> Decisions:
        return tuple(int(self.rng.integers(0, c)) for c in self.counts)

    def tell(self, decisions: Sequence[int], reward: float) -> None:
        """Random search learns nothing."""
