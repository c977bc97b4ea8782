"""Schemathesis against the server's own OpenAPI schema: every operation, valid and invalid generated bodies;
no 5xx, and every response (status, content type, body) conforms to the schema.

Examples per operation: $CANAO_FUZZ_EXAMPLES (default 25 here; benchmarks/server.py runs 150). The
operations are driven with Hypothesis directly (schemathesis's pytest plugin does not load under this
pytest), which runs the same generation and checks."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES = int(os.environ.get("CANAO_FUZZ_EXAMPLES", "25"))


def _checker(operation, examples: int, counts: dict[str, int]):
    label = operation.label
    counts[label] = 0

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:
        counts[label] += 1
        case.call_and_validate(timeout=60)

    return check


def fuzz(url: str, examples: int) -> dict[str, int]:
    """Run every operation of the schema at `url`; {operation: cases run}. Raises on the first failure."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        _checker(result.ok(), examples, counts)()
    return counts


def test_every_operation_conforms_and_never_fails_on_the_server(live):
    counts = fuzz(live.url, EXAMPLES)
    assert {"POST /v1/qa", "POST /v1/classify", "POST /v1/generate", "GET /v1/models"} <= set(counts)
    assert all(n >= 1 for n in counts.values()), counts
