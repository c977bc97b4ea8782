"""fuse_attention: scores/mask/softmax/context become one op reading Q/K/V in place."""

from __future__ import annotations

import pytest

from canao.compiler.ir import verify
from canao.compiler.passes.fold_constants import fold_constants
from canao.compiler.passes.fuse_attention import fuse_attention
from canao.compiler.passes.merge_qkv import merge_qkv
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


def _merged(spec, task):
    return fold_constants(merge_qkv(fold_constants(lowered(spec, task))))


def test_chain_becomes_attention_over_merged_qkv():
    before = _merged(ENC, "backbone")
    after = fuse_attention(before)
    verify(after)
    for op in ("attn_scores", "attn_mask", "softmax", "attn_context"):
        assert op not in after.op_counts()
    attn = after.producer()["l1_ctx"]
    assert attn.op == "attention" and attn.inputs[:3] == ("l0_out_qkv",) * 3 and attn.inputs[3] == "mask"
    assert (attn.attr("q_start"), attn.attr("k_start"), attn.attr("v_start")) == (0, 15, 30)
    assert attn.attr("heads") == 3 and attn.attr("head_dim") == 5 and not attn.attr("causal")


def test_decoder_reads_cache_and_kv_append_reads_slices():
    after = fuse_attention(_merged(DEC, "lm"))
    verify(after)
    kv = [n for n in after.nodes if n.op == "kv_append"]
    assert [(n.inputs[1], n.attr("start")) for n in kv[:2]] == [("l0_ln1_qkv", 12), ("l0_ln1_qkv", 24)]
    attn = after.producer()["l0_ctx"]
    assert attn.attr("causal") and attn.inputs[1:] == ("l0_k_all", "l0_v_all")


@pytest.mark.parametrize("spec,task", [(ENC, "classification"), (DEC, "lm")])
def test_numerics_unchanged(spec, task):
    before = _merged(spec, task)
    assert_same_outputs(before, fuse_attention(before))


@pytest.mark.parametrize("spec,task", [(ENC, "backbone"), (DEC, "lm")])
def test_bf16_graphs_get_bf16_attention_close_to_fp32(spec, task):
    before = _merged(spec, task)
    assert all(n.attr("precision", "fp32") == "fp32" for n in fuse_attention(before).nodes if n.op == "attention")
    bf16 = fuse_attention(before.with_nodes(before.nodes, matmul_precision="bf16"))
    attention = [n for n in bf16.nodes if n.op == "attention"]
    assert attention and all(n.attr("precision") == "bf16" for n in attention)
    assert_same_outputs(before, bf16, tol=0.05)  # bf16 operands: close to the unfused fp32 graph, not equal
