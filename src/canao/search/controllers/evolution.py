"""Regularised (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image Classifier Architecture Search").

A population of the `population` most recently evaluated vectors is kept;
each new child is a copy of the best of `sample` members drawn at random
from it, with one decision changed to another of its values. The oldest
member dies when a child joins, whatever its reward: this aging keeps the
search from resting on one lucky early evaluation. Until the population is
full, vectors are drawn at random.

Example::

    controller = EvolutionController(space.choice_counts(), seed=0, population=20, sample=5)
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np

from canao.errors import SpecError
from canao.search.controllers.base import Decisions


class EvolutionController:
    name = "evolution"

    def __init__(self, counts: Sequence[int], seed: int = 0, *, population: int = 20, sample: int = 5) -> None:
        if not 1 <= sample <= population:
            raise SpecError(f"`1 <= sample <= population` must hold, but got {sample=}, {population=}.")
        self.counts = tuple(int(c) for c in counts)
        self.rng = np.random.default_rng(seed)
        self.population_size, self.sample_size = population, sample
        self.population: deque[tuple[Decisions, float]] = deque()
        self.asked = 0

    def ask(self) -> Decisions:
        self.asked += 1
        if len(self.population) < self.population_size:
            return tuple(int(self.rng.integers(0, c)) for c in self.counts)
        picks = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        parent = max((self.population[int(i)] for i in picks), key=lambda member: member[1])[0]
        return self._mutate(parent)

    def _mutate(self, parent: Decisions) -> Decisions:
        mutable = [i for i, c in enumerate(self.counts) if c > 1]
        if not mutable:
            return parent
        i = int(self.rng.choice(mutable))
        child = list(parent)
        child[i] = int((parent[i] + self.rng.integers(1, self.counts[i])) % self.counts[i])  # another value
        return tuple(child)

    def tell(self, decisions: Sequence[int], reward: float) -> None:
        self.population.append((tuple(int(d) for d in decisions), float(reward)))
        if len(self.population) > self.population_size:
            self.population.popleft()  # the oldest dies, however good
