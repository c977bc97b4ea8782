"""pack_weights: GEMM weights move into the panel layout (fp32, or bf16 pairs); results are unchanged
(fp32) or those of bf16-rounded operands (bf16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canao.compiler.ir import verify
from canao.compiler.layout import (
    round_to_bf16,
)
from canao.compiler.passes.fuse_epilogues import fuse_epilogues
from canao.compiler.passes.pack_weights import pack_weights
from canao.compiler.reference import run_reference
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, encoder_inputs, lowered


def test_gemms_read_packed_panels():
    before = fuse_epilogues(lowered(ENC))
    after = pack_weights(before.with_nodes(before.nodes, gemm_nr=8))
    verify(after)
    up = after.producer()["l0_act"]
    assert up.attr("packed") == "panel8" and up.inputs[1] == "layers.0.ffn.up.weight@panel8"
    assert after.types[up.inputs[1]].shape == (4, 20, 8)  # ceil(30/8) panels of K=20 x NR=8
    assert "layers.0.ffn.up.weight" not in after.constants


@pytest.mark.parametrize("spec,task", [(ENC, "qa"), (DEC, "lm")])
def test_numerics_unchanged(spec, task):
    before = fuse_epilogues(lowered(spec, task))
    assert_same_outputs(before, pack_weights(before))


def test_bf16_gemms_read_pair_panels_and_round_their_operands():
    before = fuse_epilogues(lowered(ENC))
    after = pack_weights(before.with_nodes(before.nodes, gemm_nr=8, matmul_precision="bf16"))
    verify(after)
    up = after.producer()["l0_act"]
    assert up.attr("packed") == "bf16panel8" and up.inputs[1] == "layers.0.ffn.up.weight@bf16panel8"
    assert after.types[up.inputs[1]].shape == (4, 10, 8)  # ceil(30/8) panels of K/2=10 pairs x NR=8
    x = encoder_inputs()
    want, got = run_reference(before, x), run_reference(after, x)
    for name in before.outputs:  # bf16 operands: close to fp32, not equal
        assert 0 < np.abs(got[name] - want[name]).max() < 0.05


def test_bf16_reference_gemm_is_the_rounded_product():
    before = fuse_epilogues(lowered(ENC))
    after = pack_weights(before.with_nodes(before.nodes, gemm_nr=8, matmul_precision="bf16"))
    node = after.producer()["l0_act"]
    x = np.random.default_rng(3).normal(size=(5, 20)).astype(np.float32)
    w = before.constants["layers.0.ffn.up.weight"]
    from canao.compiler.reference import _Context
    from canao.compiler.reference import _gemm as reference_gemm

    bias = after.constants[node.inputs[2]]
    got = reference_gemm(_Context(after, {}, 0), node, x, after.constants[node.inputs[1]], bias)
    pre = round_to_bf16(x) @ round_to_bf16(w).T + bias
    np.testing.assert_allclose(got, 0.5 * pre * (1 + torch.erf(torch.tensor(pre) / np.sqrt(2)).numpy()), atol=1e-5)


def test_unknown_precision_is_refused():
    before = fuse_epilogues(lowered(ENC))
    with pytest.raises(ValueError, match="precision"):
        pack_weights(before.with_nodes(before.nodes, matmul_precision="int4"))
