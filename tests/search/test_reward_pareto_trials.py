"""Reward math, Pareto extraction and the trial store's append/reload/refusal."""

from __future__ import annotations

import pytest

from canao.errors import SpecError
from canao.search.pareto import pareto_front
from canao.search.reward import RewardConfig
from canao.search.trials import Trial, TrialStore, TrialStoreError


def test_reward_is_accuracy_under_the_budget_and_falls_over_it():
    soft = RewardConfig(target=10.0)
    assert soft.reward(0.9, 5.0) == soft.reward(0.9, 10.0) == 0.9
    assert soft.reward(0.9, 20.0) == pytest.approx(0.45)  # (20/10)^-1
    assert RewardConfig(10.0, over_budget_exponent=-0.07).reward(0.9, 20.0) == pytest.approx(0.9 * 2**-0.07)
    assert RewardConfig(10.0, mode="hard").reward(0.9, 10.01) == 0.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(SpecError, match="budget"):
            RewardConfig(bad)
    with pytest.raises(SpecError):
        RewardConfig(1.0, over_budget_exponent=0.5)


def test_pareto_front_keeps_the_undominated_fastest_first():
    points = [(0.80, 5.0), (0.85, 7.0), (0.84, 8.0), (0.90, 12.0), (0.79, 4.0), (0.90, 13.0), (0.80, 5.0)]
    front = pareto_front(points, accuracy=lambda p: p[0], latency=lambda p: p[1])
    assert front == [(0.79, 4.0), (0.80, 5.0), (0.85, 7.0), (0.90, 12.0)]
    assert pareto_front([], accuracy=lambda p: p[0], latency=lambda p: p[1]) == []


def _trial(i: int) -> Trial:
    return Trial((i, 0), {"spec": {}, "precision": "fp32", "seq_len": 128}, 0.5 + i / 100, 3.0 + i, 3.0 + i, 0.5)


def test_store_appends_reloads_and_refuses_another_search(tmp_path):
    path = tmp_path / "run" / "trials.sqlite"
    store = TrialStore(path, {"seed": 0})
    for i in range(3):
        store.append(_trial(i))
    store.close()
    again = TrialStore(path, {"seed": 0})
    assert again.trials() == [_trial(i) for i in range(3)]
    again.close()
    with pytest.raises(TrialStoreError, match="seed"):
        TrialStore(path, {"seed": 1})
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(TrialStoreError, match="not a canao trial store"):
        TrialStore(tmp_path / "junk.sqlite", {"seed": 0})


def test_kendall_tau_b():
    from canao.search.ranking import kendall_tau

    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # scipy.stats.kendalltau([1, 2, 2, 3], [1, 3, 2, 2]) == 0.4 (tau-b with ties on both sides)
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
    with pytest.raises(SpecError):
        kendall_tau([1], [1])
