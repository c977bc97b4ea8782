"""Scale-out: candidates of a round scored in parallel as Ray actor calls, with results identical to the serial run.

Each worker is a Ray actor that loads the trained supernet and the held-out
data once, then scores members with inherited weights on one CPU (one torch
thread, so workers do not fight over cores). A round's candidates are
dispatched round-robin and their accuracies collected in ask order, so the
controller hears the same tells whatever order the workers finish in: the
search ends exactly as the serial search with the same seed. `ray.init` is
local with `workers` CPUs by default; `ray_address` joins an existing
cluster (whose nodes must see the run directory's path).

Ray is an optional extra: `pip install "canao[distributed]"`.

Example::

    evaluate = ray_evaluator(Path("run/supernet"), "sst2", Path("dev.tsv"), workers=4)
    accuracies = evaluate(candidates)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from canao.errors import MissingDependencyError
from canao.search.candidates import Candidate


class MemberScorer:
    """Loads a supernet and held-out data once; scores members (by their Candidate dicts) with inherited weights."""

    def __init__(
        self, supernet_dir: str, task: str, dev: str, max_length: int, eval_examples: Optional[int], threads: int = 1
    ) -> None:
        import torch

        from canao.search.supernet import load_held_out, load_supernet

        torch.set_num_threads(threads)
        self.task = task
        self.supernet = load_supernet(Path(supernet_dir))
        self.data = load_held_out(self.supernet, task, Path(dev), max_length, eval_examples)

    def score(self, candidate: dict[str, Any]) -> float:
        from canao.search.supernet import inherited_accuracy

        return inherited_accuracy(self.supernet.model, self.task, Candidate.from_dict(candidate).spec, self.data)


def ray_evaluator(
    supernet_dir: Path,
    task: str,
    dev: Path,
    *,
    max_length: int = 128,
    eval_examples: Optional[int] = None,
    workers: int = 2,
    ray_address: Optional[str] = None,
):
    """An `Evaluate` (loop.py) that scores a round's candidates on `workers` Ray actors, in ask order."""
    try:
        import ray
    except ImportError as err:
        raise MissingDependencyError('--workers needs Ray: pip install "canao[distributed]"') from err
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(MemberScorer)
    actors: list[Any] = [
        remote.remote(str(supernet_dir), task, str(dev), max_length, eval_examples) for _ in range(workers)
    ]

    def evaluate(batch: Sequence[Candidate]) -> list[float]:
        refs = [actors[i % len(actors)].score.remote(c.to_dict()) for i, c in enumerate(batch)]
        return [float(x) for x in ray.get(refs)]  # ray.get keeps the order of refs, not of completion

    return evaluate
