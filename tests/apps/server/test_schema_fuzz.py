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


# Values a JSON parser accepts but no JSON encoder can write back (NaN, Infinity, lone surrogates), and values
# of the wrong type that lax coercion would have taken: each is a 422 naming the field, never a 500 or a 200.
# Schemathesis generates none of these (its bodies are valid JSON in the strict sense).
UNWRITABLE = [
    ("/v1/qa", '{"question": "who", "context": "Rollo", "top_k": NaN}', "top_k"),
    ("/v1/qa", '{"question": "who", "context": "Rollo", "doc_stride": Infinity}', "doc_stride"),
    ("/v1/qa", '{"question": "who", "context": "Rollo \\ud800"}', "context"),
    ("/v1/qa", '{"question": "\\ud800", "context": "Rollo"}', "question"),
    ("/v1/qa", '{"question": ["ok", "\\udfff"], "context": "Rollo"}', "question"),
    ("/v1/qa", '{"question": "who", "context": "Rollo", "top_k": true}', "top_k"),
    ("/v1/qa", '{"question": "who", "context": "Rollo", "top_k": 1.5}', "top_k"),
    ("/v1/qa", '{"question": "who", "context": "Rollo", "\\ud800": 1}', "body"),  # a surrogate in a key
    ("/v1/classify", '{"text": NaN}', "text"),
    ("/v1/classify", '{"text": "fine", "text_pair": "\\ud800"}', "text_pair"),
    ("/v1/generate", '{"prompt": "x", "temperature": NaN}', "temperature"),
    ("/v1/generate", '{"prompt": "x", "top_p": Infinity}', "top_p"),
    ("/v1/generate", '{"prompt": "x", "repetition_penalty": -Infinity}', "repetition_penalty"),
    ("/v1/generate", '{"prompt": "\\ud800"}', "prompt"),
    ("/v1/generate", '{"prompt": "x", "stop": ["\\ud83d"]}', "stop"),
    ("/v1/generate", '{"prompt": "x", "stream": "yes"}', "stream"),
    ("/v1/generate", '{"prompt": "x", "max_new_tokens": "5"}', "max_new_tokens"),
    ("/v1/generate", '{"prompt": "x", "seed": false}', "seed"),
]


@pytest.mark.parametrize("route, body, field", UNWRITABLE)
def test_unwritable_and_mistyped_values_are_422_naming_the_field(live, route, body, field):
    import httpx

    response = httpx.post(live.url + route, content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(field in [str(part) for part in entry["loc"]] for entry in detail), detail
    assert all(set(entry) == {"loc", "msg", "type"} for entry in detail)  # the input is never echoed
