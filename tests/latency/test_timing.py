"""Timing helpers: statistics over samples, alternating rounds that give every peer its share."""

from __future__ import annotations

import pytest

from canao.latency.timing import measure_interleaved_ms, measure_ms


def test_measure_ms_counts_runs_and_orders_statistics():
    calls = []
    stats = measure_ms(lambda: calls.append(1), warmup=2, runs=7)
    assert len(calls) == 9 and stats.runs == 7
    assert 0 <= stats.min_ms <= stats.median_ms <= stats.p90_ms and stats.iqr_ms >= 0


def test_measure_ms_refuses_no_runs():
    with pytest.raises(ValueError, match="runs >= 1"):
        measure_ms(lambda: None, runs=0)


def test_interleaved_rounds_alternate_peers():
    order: list[str] = []
    stats = measure_interleaved_ms(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, runs=6, rounds=3, settle_s=0.0
    )
    assert stats["a"].runs == stats["b"].runs == 6
    # every round runs a, then b: the sequence switches peers once per round and peer
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches == 5 and order[0] == "a"
