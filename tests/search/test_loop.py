"""The search loop on a synthetic accuracy and latency: resume after a kill, infeasible budgets, dedup, FLOPs."""

from __future__ import annotations

import pytest

from canao.arch import SearchSpace
from canao.search.candidates import Candidate, CandidateSpace
from canao.search.controllers import CONTROLLERS
from canao.search.loop import BudgetInfeasible, SearchConfig, run_search

SPACE = CandidateSpace(
    SearchSpace("encoder", 100, 64, (32, 48, 64), (1, 2, 3), (2, 4), 16, (32, 64, 128)),
    precisions=("fp32", "int8"),
    seq_lens=(32,),
)


def accuracy(c: Candidate) -> float:
    """Bigger is better, with diminishing returns (like inherited accuracy)."""
    return 1.0 - 1.0 / (1.0 + c.spec.num_params() / 1e4)


def latency(c: Candidate) -> float:
    """Roughly proportional to FLOPs, int8 twice as fast."""
    return 0.1 + c.spec.flops(c.seq_len) / 1e6 * (0.5 if c.precision.value == "int8" else 1.0)


class Counting:
    def __init__(self, crash_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.crash_after = crash_after

    def __call__(self, batch):
        if self.crash_after is not None and len(self.seen) >= self.crash_after:
            raise KeyboardInterrupt  # like a kill between two batches
        self.seen += [c.key() for c in batch]
        return [accuracy(c) for c in batch]


@pytest.mark.parametrize("controller", CONTROLLERS)  # the registry itself: a new controller cannot escape it
def test_a_killed_search_resumes_to_the_same_result(tmp_path, controller):
    config = SearchConfig(latency_ms=3.0, controller=controller, evaluations=24, seed=3, batch=4)
    straight = run_search(config, SPACE, Counting(), latency, tmp_path / "a.sqlite")
    with pytest.raises(KeyboardInterrupt):
        run_search(config, SPACE, Counting(crash_after=9), latency, tmp_path / "b.sqlite")
    fresh = Counting()
    resumed = run_search(config, SPACE, fresh, latency, tmp_path / "b.sqlite")
    assert resumed.trials == straight.trials and resumed.best == straight.best and resumed.front == straight.front
    assert resumed.resumed_trials >= 8 and len(fresh.seen) < 24  # the stored trials were not evaluated again


def test_each_candidate_is_evaluated_once_and_the_best_meets_the_budget(tmp_path):
    evaluate = Counting()
    result = run_search(
        SearchConfig(latency_ms=3.0, controller="evolution", evaluations=60, seed=0),
        SPACE,
        evaluate,
        latency,
        tmp_path / "s.sqlite",
    )
    assert len(evaluate.seen) == len(set(evaluate.seen)) <= 60
    assert result.best is not None and result.best.latency_ms <= 3.0
    assert all(t.accuracy <= result.best.accuracy for t in result.trials if t.latency_ms <= 3.0)
    fast = [t.latency_ms for t in result.front]
    assert fast == sorted(fast) and result.best in result.front


def test_an_infeasible_budget_says_what_the_space_can_reach(tmp_path):
    with pytest.raises(BudgetInfeasible, match=r"no member .* meets 0.01 ms: the fastest, .* predicted at"):
        run_search(SearchConfig(latency_ms=0.01), SPACE, Counting(), latency, tmp_path / "x.sqlite")


def test_flops_proxy_weighs_gflops(tmp_path):
    config = SearchConfig(latency_ms=3.0, controller="random", evaluations=8, cost="flops", flops_budget_gflops=0.002)
    result = run_search(config, SPACE, Counting(), latency, tmp_path / "f.sqlite")
    for t in result.trials:
        c = Candidate.from_dict(t.candidate)
        assert t.cost == pytest.approx(c.spec.flops(c.seq_len) / 1e9)


def test_the_infeasible_message_names_what_binds(tmp_path):
    from canao.search.loop import check_feasible

    config = SearchConfig(latency_ms=0.05)
    fixed_heavy = lambda c: {"embedding and head": 0.08, "layers": 0.02}  # noqa: E731
    with pytest.raises(BudgetInfeasible, match="hidden size and the sequence length bind"):
        check_feasible(config, SPACE, lambda c: 0.1, fixed_heavy)
    depth_heavy = lambda c: {"embedding and head": 0.01, "layers": 0.09}  # noqa: E731
    with pytest.raises(BudgetInfeasible, match="minimum depth of 1 layers .* binds"):
        check_feasible(config, SPACE, lambda c: 0.1, depth_heavy)
