"""The controller contract, for every controller: seeded reproducibility, valid vectors, batches, learning.

A synthetic objective stands in for accuracy x latency: the reward is the
fraction of decisions equal to a hidden target vector. Evolution and
REINFORCE must find better vectors than random search in the same number of
evaluations (averaged over seeds, so one lucky seed does not decide).
"""

from __future__ import annotations

import numpy as np
import pytest

from canao.errors import SpecError
from canao.search.controllers import CONTROLLERS, make_controller
from canao.search.controllers.evolution import EvolutionController

COUNTS = (3, 5, 4, 4, 4, 4, 4, 4, 2, 2)
TARGET = (2, 4, 1, 3, 0, 2, 3, 1, 1, 0)


def objective(decisions) -> float:
    return float(np.mean([d == t for d, t in zip(decisions, TARGET)]))


def run(name: str, seed: int, evaluations: int, batch: int = 1) -> list[tuple[tuple[int, ...], float]]:
    controller = make_controller(name, COUNTS, seed)
    history = []
    while len(history) < evaluations:
        asked = [controller.ask() for _ in range(batch)]
        for decisions in asked:
            reward = objective(decisions)
            controller.tell(decisions, reward)
            history.append((decisions, reward))
    return history


@pytest.mark.parametrize("name", CONTROLLERS)
def test_same_seed_same_search_other_seed_other_search(name):
    assert run(name, 7, 30, batch=3) == run(name, 7, 30, batch=3)
    assert run(name, 7, 30) != run(name, 8, 30)


@pytest.mark.parametrize("name", CONTROLLERS)
def test_vectors_respect_the_choice_counts(name):
    for decisions, _ in run(name, 0, 60, batch=4):
        assert len(decisions) == len(COUNTS) and all(0 <= d < c for d, c in zip(decisions, COUNTS))
        assert all(isinstance(d, int) for d in decisions)


def test_learning_controllers_beat_random_search():
    def best(name: str) -> float:
        return float(np.mean([max(r for _, r in run(name, seed, 150)) for seed in range(3)]))

    random_best = best("random")
    assert best("evolution") > random_best
    assert best("rl") > random_best


def test_evolution_mutates_one_decision_of_a_good_parent():
    controller = EvolutionController(COUNTS, 0, population=4, sample=4)
    for _ in range(4):
        controller.tell(controller.ask(), 0.0)
    controller.population[2] = (TARGET, 1.0)
    child = controller.ask()
    assert sum(a != b for a, b in zip(child, TARGET)) == 1  # one decision of the best parent changed
    with pytest.raises(SpecError):
        EvolutionController(COUNTS, 0, population=2, sample=3)


def test_unknown_controller():
    with pytest.raises(SpecError, match="rl.*evolution.*random"):
        make_controller("bayes", COUNTS)
