"""The controller contract: `ask()` a decision vector, `tell(decisions, reward)` how it scored.

Every controller (random, regularised evolution, REINFORCE) implements the
same small protocol, in the spirit of Optuna's samplers:

- it is built from a CandidateSpace's choice counts and a seed, and owns its
  random generators (numpy `Generator`, or a seeded torch generator): two
  controllers with the same seed and the same tells ask the same vectors;
- `ask()` may be called several times before the matching `tell`s (a batch
  evaluated in parallel); tells come back in ask order;
- it keeps no state that the sequence of (asked, told) pairs does not
  determine, so a search resumes by replaying the trial store through a new
  controller with the same seed (canao.search.loop).

Example::

    controller = make_controller("evolution", space.choice_counts(), seed=0)
    decisions = controller.ask()
    controller.tell(decisions, reward=0.87)
"""

from __future__ import annotations

from typing import Protocol, Sequence

Decisions = tuple[int, ...]


class Controller(Protocol):
    name: str

    def ask(self) -> Decisions:
        """The next decision vector to evaluate (each entry in 0..count-1)."""
        ...

    def tell(self, decisions: Sequence[int], reward: float) -> None:
        """The reward of a vector this controller asked for (in ask order)."""
        ...
