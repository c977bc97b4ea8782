"""A progress callback that interrupts a training run at a given step, as a crash or a kill would."""

from __future__ import annotations

from typing import Callable


class Interrupted(Exception):
    """Raised by `interrupt_at` (a test's stand-in for a crash mid-run)."""


def interrupt_at(step: int) -> Callable[[int, int, float], None]:
    """A progress callback raising Interrupted when the loop reports `step` (its checkpoint is then the last
    one saved before it)."""

    def progress(done: int, total: int, loss: float) -> None:
        if done == step:
            raise Interrupted(f"interrupted at step {step} of {total}")

    return progress
