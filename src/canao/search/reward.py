"""The search reward: accuracy traded against latency the MnasNet way (Tan et al. 2019, as CANAO uses it).

    reward = accuracy * (latency / target) ** w,   w = 0 if latency <= target else `over_budget_exponent` (< 0)

Under the budget only accuracy counts; over it the reward falls with the
overshoot, softly, so the controller still learns which direction is
faster. In "hard" mode a candidate over the budget gets reward 0. The same
form serves a FLOPs proxy: `cost` is then GFLOPs and `target` a FLOPs budget.

Example::

    RewardConfig(target=12.0).reward(accuracy=0.88, cost=15.0)   # 0.88 * 1.25 ** -1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canao.errors import SpecError

MODES = ("soft", "hard")


@dataclass(frozen=True)
class RewardConfig:
    target: float  # the budget: ms of predicted latency (or GFLOPs with the FLOPs proxy)
    over_budget_exponent: float = -1.0  # w over the budget (MnasNet's hard-constraint setting is -1)
    mode: str = "soft"

    def __post_init__(self) -> None:
        if not (isinstance(self.target, (int, float)) and math.isfinite(self.target) and self.target > 0):
            raise SpecError(f"the latency budget must be a positive number of ms, but got {self.target!r}.")
        if not self.over_budget_exponent < 0:
            raise SpecError(f"`over_budget_exponent < 0` must hold, but got {self.over_budget_exponent}.")
        if self.mode not in MODES:
            raise SpecError(f"`mode` must be one of {MODES}, but got {self.mode!r}.")

    def reward(self, accuracy: float, cost: float) -> float:
        if cost <= self.target:
            return float(accuracy)
        if self.mode == "hard":
            return 0.0
        return float(accuracy) * (cost / self.target) ** self.over_budget_exponent
