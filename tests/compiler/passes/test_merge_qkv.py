"""merge_qkv: Q, K, V linears on one activation become one GEMM and three column slices."""

from __future__ import annotations

import pytest

from canao.compiler.ir import verify
from canao.compiler.passes.fold_constants import fold_constants
from canao.compiler.passes.merge_qkv import merge_qkv
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


def test_three_linears_become_one():
    before = fold_constants(lowered(ENC))
    after = merge_qkv(before)
    verify(after)
    layer0 = [n for n in after.nodes if n.source.startswith("layers.0.attn")]
    mm = [n for n in layer0 if n.op == "matmul"]
    assert len(mm) == 2  # merged QKV and the output projection
    assert after.types[mm[0].output].shape == ("T", 3 * 2 * 6)
    slices = [n for n in layer0 if n.op == "slice_cols"]
    assert [(n.output, n.attr("start"), n.attr("width")) for n in slices] == [
        ("l0_q", 0, 12),
        ("l0_k", 12, 12),
        ("l0_v", 24, 12),
    ]
    assert before.op_counts()["matmul"] - after.op_counts()["matmul"] == 2 * 2  # two layers, 3 -> 1


@pytest.mark.parametrize("spec", [ENC, DEC])
def test_numerics_unchanged(spec):
    before = fold_constants(lowered(spec, "lm" if spec.kind == "decoder" else "qa"))
    assert_same_outputs(before, fold_constants(merge_qkv(before)))
