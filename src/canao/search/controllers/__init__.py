"""Search controllers behind one ask/tell protocol (base.py): random, regularised evolution, REINFORCE.

Example::

    controller = make_controller("rl", space.choice_counts(), seed=0)
"""

from __future__ import annotations

from typing import Sequence

from canao.errors import SpecError
from canao.search.controllers.base import Controller, Decisions
from canao.search.controllers.evolution import EvolutionController
from canao.search.controllers.random import RandomController

CONTROLLERS = ("rl", "evolution", "random")


def make_controller(name: str, counts: Sequence[int], seed: int = 0) -> Controller:
    """A controller by name ("rl", "evolution", "random") for vectors with these choice counts."""
    if name == "random":
        return RandomController(counts, seed)
    if name == "evolution":
        return EvolutionController(counts, seed)
    if name == "rl":
        from canao.search.controllers.rl import ReinforceController  # torch: only when asked for

        return ReinforceController(counts, seed)
    raise SpecError(f"`controller` must be one of {CONTROLLERS}, but got {name!r}.")


__all__ = ["CONTROLLERS", "Controller", "Decisions", "make_controller"]
