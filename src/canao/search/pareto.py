"""The Pareto front of (accuracy, latency): the candidates no other beats on both.

Example::

    front = pareto_front(trials, accuracy=lambda t: t.accuracy, latency=lambda t: t.latency_ms)
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def pareto_front(items: Sequence[T], *, accuracy: Callable[[T], float], latency: Callable[[T], float]) -> list[T]:
    """Members not dominated (another at most as slow and at least as accurate, better in one), fastest first.

    Of members equal in both, the first is kept."""
    front: list[T] = []
    best_accuracy = float("-inf")
    for item in sorted(items, key=lambda x: (latency(x), -accuracy(x))):
        if accuracy(item) > best_accuracy:
            front.append(item)
            best_accuracy = accuracy(item)
    return front
