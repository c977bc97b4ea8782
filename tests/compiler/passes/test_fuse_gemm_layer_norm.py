"""fuse_gemm_layer_norm: a LayerNorm read from a GEMM (after LP-Fusion took the residual) joins the GEMM."""

from __future__ import annotations

from canao.compiler.ir import verify
from canao.compiler.passes.fuse_add_layer_norm import fuse_add_layer_norm
from canao.compiler.passes.fuse_epilogues import fuse_epilogues
from canao.compiler.passes.fuse_gemm_layer_norm import fuse_gemm_layer_norm
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


def _fused(spec=ENC, task="backbone"):
    return fuse_add_layer_norm(fuse_epilogues(lowered(spec, task)))


def test_post_ln_blocks_normalise_in_their_gemms():
    before = _fused()
    after = fuse_gemm_layer_norm(before)
    verify(after)
    assert before.op_counts()["layer_norm"] == 4 and "layer_norm" not in after.op_counts()
    attn_norm = after.producer()["l0_attn_norm"]
    assert attn_norm.op == "gemm" and attn_norm.attr("epilogue") == ("bias", "residual", "layer_norm:1e-12")
    gamma, beta = attn_norm.inputs[-2:]
    assert gamma in after.constants and beta in after.constants
    # the GEMM's own output is gone, and the number of GEMMs is unchanged
    assert "l0_attn_res" not in after.types or "l0_attn_res" not in after.producer()
    assert after.op_counts()["gemm"] == before.op_counts()["gemm"]
    # the embedding's add+LayerNorm has no GEMM under it and stays
    assert after.op_counts()["add_layer_norm"] == 1


def test_a_gemm_read_elsewhere_too_keeps_its_layer_norm():
    """Pre-LN decoders read each residual sum twice (the next LayerNorm and the next residual): those stay;
    only the final LayerNorm, the last sum's one reader, joins its GEMM."""
    after = fuse_gemm_layer_norm(_fused(DEC))
    assert [n.output for n in after.nodes if n.op == "layer_norm"] == ["l0_ln1", "l0_ln2", "l1_ln1", "l1_ln2"]
    assert after.producer()["final"].attr("epilogue") == ("bias", "residual", "layer_norm:1e-05")
    assert_same_outputs(_fused(DEC), after)


def test_numerics_unchanged():
    before = _fused(ENC, "classification")
    assert_same_outputs(before, fuse_gemm_layer_norm(before))
