"""Phase 2 of the search: a controller proposes, the supernet and the latency model score, the trial store remembers.

Each round the controller is asked for `batch` decision vectors (a batch
can be evaluated in parallel; the order of tells is the order of asks, so
the result does not depend on which evaluation finishes first). Each
candidate gets

    accuracy  from the supernet's inherited weights on held-out data (`evaluate`),
    latency   from the device profile's predictor for its precision (`latency_ms`),
    reward    = accuracy x (cost / target)^w  (search/reward.py), cost = latency or, as a proxy, GFLOPs,

and is appended to the SQLite trial store before the controller hears of
it. A killed search resumes by replaying the stored trials through a new
controller with the same seed (the controllers are deterministic given
their tells) and then goes on: it ends with the same trials as an
uninterrupted run. A candidate evaluated before is not evaluated again.

Example::

    result = run_search(SearchConfig(latency_ms=12.0), space, evaluate, latency_ms, Path("run/trials.sqlite"))
    result.best, result.front
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from canao.errors import CanaoError, SpecError
from canao.search.candidates import Candidate, CandidateSpace
from canao.search.controllers import CONTROLLERS, DEFAULT_CONTROLLER, make_controller
from canao.search.pareto import pareto_front
from canao.search.reward import MODES, RewardConfig
from canao.search.trials import Trial, TrialStore

log = logging.getLogger(__name__)
COSTS = ("latency", "flops")
Evaluate = Callable[[Sequence[Candidate]], list[float]]  # accuracies of a batch (may run it in parallel)
Progress = Callable[[int, int, Optional[float]], None]  # (evaluations done, total, best reward so far)


class BudgetInfeasible(CanaoError, ValueError):
    """No member of the search space meets the latency budget."""


@dataclass(frozen=True)
class SearchConfig:
    latency_ms: float  # the budget on predicted latency
    controller: str = DEFAULT_CONTROLLER
    evaluations: int = 100
    seed: int = 0
    batch: int = 4  # vectors asked per round (evaluated together; fixed, so workers do not change results)
    cost: str = "latency"  # what the reward weighs: predicted latency, or GFLOPs (the proxy CANAO improves on)
    flops_budget_gflops: Optional[float] = None  # with cost="flops": the budget in GFLOPs
    reward_mode: str = "soft"
    over_budget_exponent: float = -1.0

    def __post_init__(self) -> None:
        if self.controller not in CONTROLLERS:
            raise SpecError(f"`controller` must be one of {CONTROLLERS}, but got {self.controller!r}.")
        if self.cost not in COSTS:
            raise SpecError(f"`cost` must be one of {COSTS}, but got {self.cost!r}.")
        if self.evaluations < 1 or self.batch < 1:
            raise SpecError(f"need evaluations >= 1 and batch >= 1, got {self.evaluations} and {self.batch}.")
        if self.reward_mode not in MODES:
            raise SpecError(f"`reward_mode` must be one of {MODES}, but got {self.reward_mode!r}.")
        if self.cost == "flops" and not (self.flops_budget_gflops or 0) > 0:
            raise SpecError("the FLOPs proxy needs `flops_budget_gflops` > 0.")
        RewardConfig(self.latency_ms, self.over_budget_exponent, self.reward_mode)  # validates the budget

    def reward(self) -> RewardConfig:
        target = self.latency_ms if self.cost == "latency" else float(self.flops_budget_gflops or 0)
        return RewardConfig(target, self.over_budget_exponent, self.reward_mode)


@dataclass(frozen=True)
class SearchResult:
    trials: list[Trial]
    best: Optional[Trial]  # the most accurate trial whose predicted latency meets the budget
    front: list[Trial]  # Pareto front of (accuracy, predicted latency), fastest first
    resumed_trials: int  # how many came from the store of an earlier, interrupted run


def lowest_latency(space: CandidateSpace, latency_ms: Callable[[Candidate], float]) -> tuple[Candidate, float]:
    """The fastest member the space allows (smallest architecture, at each precision and sequence length)."""
    smallest = space.smallest().spec
    options = [Candidate(smallest, p, t) for p in space.precisions for t in space.seq_lens]
    timed = [(c, latency_ms(c)) for c in options]
    return min(timed, key=lambda pair: pair[1])


Breakdown = Callable[[Candidate], dict[str, float]]  # {"embedding and head": ms, "layers": ms}


def check_feasible(
    config: SearchConfig,
    space: CandidateSpace,
    latency_ms: Callable[[Candidate], float],
    breakdown: Optional[Breakdown] = None,
) -> None:
    """Refuse a budget no member can meet, saying how close the space gets and which dimension binds."""
    fastest, ms = lowest_latency(space, latency_ms)
    if ms <= config.latency_ms:
        return
    a, spec = space.arch, fastest.spec
    binds = (
        f"the space's floor binds (smallest hidden {min(a.hidden_choices)}, {min(a.layer_choices)} layers, "
        f"{min(a.heads_choices)} heads, FFN {min(a.ffn_choices)})"
    )
    if breakdown is not None:
        parts = breakdown(fastest)
        fixed, layers = parts["embedding and head"], parts["layers"]
        if fixed >= config.latency_ms:
            binds = (
                f"the embedding and head alone take {fixed:.2f} ms at hidden {spec.hidden} and {fastest.seq_len} "
                "tokens: the hidden size and the sequence length bind, whatever the depth"
            )
        else:
            binds = (
                f"the embedding and head take {fixed:.2f} ms and the minimum depth of {spec.num_layers} layers "
                f"(each at its smallest) {layers:.2f} ms: the minimum depth binds"
            )
    raise BudgetInfeasible(
        f"no member of the search space meets {config.latency_ms:g} ms: the fastest, {fastest.describe()}, is "
        f"predicted at {ms:.2f} ms; {binds}. Raise the budget to at least {ms:.2f} ms, or widen the space "
        "downwards (fewer layers, a smaller hidden size, shorter sequences, int8)."
    )


def _settings(config: SearchConfig, space: CandidateSpace, extra: dict) -> dict:
    return {"search": asdict(config), "space": space.to_dict(), **extra}


def run_search(
    config: SearchConfig,
    space: CandidateSpace,
    evaluate: Evaluate,
    latency_ms: Callable[[Candidate], float],
    store_path: Path,
    *,
    settings: Optional[dict] = None,
    progress: Optional[Progress] = None,
    breakdown: Optional[Breakdown] = None,
) -> SearchResult:
    """Search `config.evaluations` candidates (resuming from `store_path`) and return trials, best and front."""
    check_feasible(config, space, latency_ms, breakdown)
    reward = config.reward()
    store = TrialStore(store_path, _settings(config, space, settings or {}))
    try:
        stored = store.trials()
        controller = make_controller(config.controller, space.choice_counts(), config.seed)
        trials: list[Trial] = []
        known: dict[str, Trial] = {}
        while len(trials) < config.evaluations:
            size = min(config.batch, config.evaluations - len(trials))
            asked = [controller.ask() for _ in range(size)]
            batch = _round(asked, stored[len(trials) :], space, config, reward, evaluate, latency_ms, known, store)
            for trial in batch:
                controller.tell(trial.decisions, trial.reward)
                known.setdefault(Candidate.from_dict(trial.candidate).key(), trial)
            trials += batch
            if progress:
                progress(len(trials), config.evaluations, max(t.reward for t in trials))
    finally:
        store.close()
    return SearchResult(
        trials, best_under_budget(trials, config.latency_ms), front_of(trials), min(len(stored), config.evaluations)
    )


def _round(
    asked: list[tuple[int, ...]],
    stored: list[Trial],
    space: CandidateSpace,
    config: SearchConfig,
    reward: RewardConfig,
    evaluate: Evaluate,
    latency_ms: Callable[[Candidate], float],
    known: dict[str, Trial],
    store: TrialStore,
) -> list[Trial]:
    """The trials of one round: replayed from the store where it has them, else evaluated and appended."""
    out: list[Trial] = []
    for decisions, old in zip(asked, stored):
        if tuple(old.decisions) != tuple(decisions):
            raise SpecError(
                f"{store.path}: trial {len(out)} was {list(old.decisions)}, but the controller now asks "
                f"{list(decisions)}; the store is from another search (use another --out)."
            )
        out.append(old)
    fresh = asked[len(out) :]
    candidates = [space.decode(d) for d in fresh]
    todo = [c for c in candidates if c.key() not in known]
    unique = list({c.key(): c for c in todo}.values())
    accuracies = dict(zip((c.key() for c in unique), evaluate(unique))) if unique else {}
    for decisions, candidate in zip(fresh, candidates):
        key = candidate.key()
        accuracy = accuracies[key] if key in accuracies else known[key].accuracy
        latency = latency_ms(candidate)
        cost = latency if config.cost == "latency" else candidate.spec.flops(candidate.seq_len) / 1e9
        trial = Trial(
            tuple(decisions),
            candidate.to_dict(),
            float(accuracy),
            float(latency),
            float(cost),
            reward.reward(accuracy, cost),
        )
        store.append(trial)
        out.append(trial)
    return out


def best_under_budget(trials: Sequence[Trial], latency_ms: float) -> Optional[Trial]:
    """The most accurate trial whose predicted latency meets the budget (the faster of equals)."""
    feasible = [t for t in trials if t.latency_ms <= latency_ms]
    return max(feasible, key=lambda t: (t.accuracy, -t.latency_ms)) if feasible else None


def front_of(trials: Sequence[Trial]) -> list[Trial]:
    unique = list({Candidate.from_dict(t.candidate).key(): t for t in trials}.values())
    return pareto_front(unique, accuracy=lambda t: t.accuracy, latency=lambda t: t.latency_ms)
