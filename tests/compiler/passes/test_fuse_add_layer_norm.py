"""fuse_add_layer_norm: an add read only by a LayerNorm becomes add_layer_norm."""

from __future__ import annotations

from canao.compiler.ir import verify
from canao.compiler.passes.fuse_add_layer_norm import fuse_add_layer_norm
from canao.compiler.passes.fuse_epilogues import fuse_epilogues
from tests.compiler.graphs import ENC, assert_same_outputs, lowered


def test_embedding_sum_and_layer_residuals():
    before = lowered(ENC)
    after = fuse_add_layer_norm(before)
    verify(after)
    emb = after.producer()["emb"]
    assert emb.op == "add_layer_norm" and emb.inputs[:2] == ("emb_sum", "emb_type")
    assert after.producer()["l0_attn_norm"].op == "add_layer_norm"
    assert after.op_counts()["add_layer_norm"] == 1 + 2 * 2


def test_after_lp_fusion_only_the_embedding_add_is_left():
    after = fuse_add_layer_norm(fuse_epilogues(lowered(ENC)))
    assert after.op_counts()["add_layer_norm"] == 1 and after.op_counts()["layer_norm"] == 4


def test_numerics_unchanged():
    before = lowered(ENC, "classification")
    assert_same_outputs(before, fuse_add_layer_norm(before))
