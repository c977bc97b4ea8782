"""LP-Fusion: bias, residual, GELU, tanh and scale join the GEMM that produces their input."""

from __future__ import annotations

import numpy as np
import pytest

from canao.compiler.ir import Graph, TensorType, make_node, verify
from canao.compiler.passes.fuse_epilogues import fuse_epilogues
from canao.compiler.reference import run_reference
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


def test_ffn_and_residual_chains():
    after = fuse_epilogues(lowered(ENC))
    verify(after)
    up = after.producer()["l0_act"]
    assert up.op == "gemm" and up.attr("epilogue") == ("bias", "gelu")
    down = after.producer()["l0_ffn_res"]  # matmul + bias + residual add, LayerNorm stays
    assert down.attr("epilogue") == ("bias", "residual") and down.inputs[3] == "l0_attn_norm"
    assert after.producer()["pooled"].attr("epilogue") == ("bias", "tanh")
    assert "matmul" not in after.op_counts() and "gelu" not in after.op_counts()


def test_residual_on_the_left_and_scale():
    types = {n: TensorType(("T", 4)) for n in ("x", "r", "y", "z", "out")}
    types.update(w=TensorType((4, 4)), b=TensorType((4,)))
    nodes = (
        make_node("matmul", ("x", "w"), "y"),
        make_node("add", ("r", "y"), "z"),
        make_node("scale", ("z",), "out", factor=0.5),
    )
    rng = np.random.default_rng(0)
    g = Graph(
        ("x", "r"),
        ("out",),
        nodes,
        types,
        {"w": rng.normal(size=(4, 4)).astype(np.float32)},
        {"kind": "encoder", "max_positions": 8},
    )
    fused = fuse_epilogues(g)
    (node,) = fused.nodes
    assert node.op == "gemm" and node.inputs == ("x", "w", "r") and node.attr("epilogue") == ("residual", "scale:0.5")
    x = {"x": rng.normal(size=(3, 4)).astype(np.float32), "r": rng.normal(size=(3, 4)).astype(np.float32)}
    x["input_ids"] = x["x"]
    np.testing.assert_allclose(run_reference(fused, x)["out"], run_reference(g, x)["out"], rtol=1e-6)


@pytest.mark.parametrize("spec,task", [(ENC, "backbone"), (ENC, "qa"), (DEC, "lm")])
def test_numerics_unchanged(spec, task):
    before = lowered(spec, task)
    assert_same_outputs(before, fuse_epilogues(before))
