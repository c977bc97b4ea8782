"""Search controllers behind one ask/tell protocol (base.py): random, regularised evolution, REINFORCE.

Example::

    controller = make_controller("rl", space.choice_counts(), seed=0)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Sequence

from canao.errors import SpecError
from canao.search.controllers.base import Controller, Decisions


@dataclass(frozen=True)
class ControllerEntry:
    """One controller: its name on the command line, the class behind it (module, class name: imported when
    asked for, so REINFORCE's torch loads only for it) and a line for the help."""

    name: str
    module: str
    cls: str
    about: str

    def make(self, counts: Sequence[int], seed: int) -> Controller:
        return getattr(importlib.import_module(self.module), self.cls)(counts, seed)


# Adding a controller is one entry here (plus its class): the CLI's choices, the config checks and the
# contract and resume test suites (tests/search) are all read from this table.
REGISTRY: dict[str, ControllerEntry] = {
    e.name: e
    for e in (
        ControllerEntry("rl", "canao.search.controllers.rl", "ReinforceController", "REINFORCE, as CANAO"),
        ControllerEntry(
            "evolution", "canao.search.controllers.evolution", "EvolutionController", "regularised evolution"
        ),
        ControllerEntry(
            "random", "canao.search.controllers.random", "RandomController", "random search (the baseline)"
        ),
    )
}
CONTROLLERS = tuple(REGISTRY)
DEFAULT_CONTROLLER = "rl"


def make_controller(name: str, counts: Sequence[int], seed: int = 0) -> Controller:
    """A controller by name (one of CONTROLLERS) for vectors with these choice counts."""
    if name not in REGISTRY:
        raise SpecError(f"`controller` must be one of {CONTROLLERS}, but got {name!r}.")
    return REGISTRY[name].make(counts, seed)


__all__ = [
    "CONTROLLERS",
    "DEFAULT_CONTROLLER",
    "REGISTRY",
    "Controller",
    "ControllerEntry",
    "Decisions",
    "make_controller",
]
