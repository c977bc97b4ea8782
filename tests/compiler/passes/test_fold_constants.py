"""fold_constants: the attention scale moves into W_q/b_q; constant-only nodes become constants."""

from __future__ import annotations

import numpy as np
import pytest

from canao.compiler.ir import Graph, TensorType, make_node, verify
from canao.compiler.passes.fold_constants import fold_constants
from canao.compiler.reference import run_reference
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


def test_scale_folds_into_query_weights():
    before = lowered(ENC)
    after = fold_constants(before)
    verify(after)
    assert before.op_counts()["scale"] == 2 and "scale" not in after.op_counts()
    q = after.producer()["l0_q"]  # the scaled Q keeps its name, now an add of folded bias
    assert q.op == "add" and q.inputs[1].startswith("layers.0.attn.q.bias*scale")
    w = after.constants[after.producer()[q.inputs[0]].inputs[1]]
    np.testing.assert_allclose(w, before.constants["layers.0.attn.q.weight"] / np.sqrt(6), rtol=1e-6)


def test_constant_subgraph_is_evaluated():
    a, b = np.ones((2, 3), np.float32), np.full((1, 3), 2.0, np.float32)
    types = {
        "x": TensorType(("T", 3)),
        "a": TensorType((2, 3)),
        "b": TensorType((1, 3)),
        "ab": TensorType((3, 3)),
        "y": TensorType(("T", 3)),
    }
    g = Graph(
        ("x",),
        ("y",),
        (make_node("concat_rows", ("a", "b"), "ab"), make_node("matmul", ("x", "ab"), "y")),
        types,
        {"a": a, "b": b},
        {"kind": "encoder", "max_positions": 4},
    )
    folded = fold_constants(g)
    assert [n.op for n in folded.nodes] == ["matmul"] and "ab" in folded.constants
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(
        run_reference(folded, {"x": x, "input_ids": x})["y"], run_reference(g, {"x": x, "input_ids": x})["y"]
    )


@pytest.mark.parametrize("spec", [ENC, DEC])
def test_numerics_unchanged(spec):
    before = lowered(spec, "lm" if spec.kind == "decoder" else "backbone")
    assert_same_outputs(before, fold_constants(before))
