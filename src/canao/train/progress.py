"""How training reports progress, kept free of torch so the CLI can import it at start-up.

The trainers (fine-tuning, distillation, language modelling, the supernet) call a `Progress` callback; the CLI's
bar and plain log lines and the accuracy benchmark show its loss with `loss_text`.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int, float], None]  # (step, total steps, running loss)


def loss_text(loss: float) -> str:
    """How a progress line shows a Progress loss: "loss 0.1234", or nothing for NaN, which passes that train
    nothing report (the teacher's outputs computed for the distillation cache): not a diverged run."""
    return f"loss {loss:.4f}" if loss == loss else ""
