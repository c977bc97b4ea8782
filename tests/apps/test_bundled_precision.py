"""The bundled models run at the fastest precision this CPU multiplies natively whose recorded validation score
stays within the tolerance of fp32; fp32 without a record."""

from __future__ import annotations

import json

import pytest

from canao.apps.bundled import SERVING_TOLERANCE, serving_precision


def _checkpoint(tmp_path, scores):
    record = {"precisions": {"metric": "f1", "scores": {p: {"validation": {"f1": f1}} for p, f1 in scores.items()}}}
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    return tmp_path


@pytest.mark.parametrize(
    "simd, scores, want",
    [
        ("avx512bf16", {"fp32": 85.0, "bf16": 84.9, "int8": 84.7}, "int8"),
        ("avx512bf16", {"fp32": 85.0, "bf16": 84.9, "int8": 85.0 - SERVING_TOLERANCE - 0.01}, "bf16"),
        ("avx512bf16", {"fp32": 85.0, "bf16": 83.0, "int8": 80.0}, "fp32"),
        ("avx512", {"fp32": 85.0, "bf16": 85.0, "int8": 85.0}, "fp32"),  # widened there: no faster than fp32
        ("avx2", {"fp32": 85.0, "int8": 85.0}, "fp32"),
        ("avx512bf16", {"bf16": 85.0, "int8": 85.0}, "fp32"),  # no fp32 reference: nothing to compare with
    ],
)
def test_the_fastest_native_precision_within_tolerance(tmp_path, simd, scores, want):
    precision, why = serving_precision(_checkpoint(tmp_path, scores), simd=simd)
    assert precision == want, why
    assert why.startswith(want)


def test_no_record_means_fp32(tmp_path):
    assert serving_precision(tmp_path, simd="avx512bf16") == (
        "fp32",
        "fp32: no per-precision scores are recorded for this model",
    )
    (tmp_path / "metrics.json").write_text("{not json")
    assert serving_precision(tmp_path, simd="avx512bf16")[0] == "fp32"


def test_the_shipped_qa_model_has_a_record_with_a_fp32_reference():
    from canao.models.teacher import bundled_qa_dir

    record = json.loads((bundled_qa_dir() / "metrics.json").read_text())["precisions"]
    assert record["metric"] == "f1" and {"fp32", "bf16", "int8"} <= set(record["scores"])
    for scores in record["scores"].values():
        assert {"validation", "dev"} <= set(scores)
