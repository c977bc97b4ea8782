"""eliminate_dead_code: unused nodes and constants go; kv_append always stays."""

from __future__ import annotations

from canao.compiler.ir import verify
from canao.compiler.passes.eliminate_dead_code import eliminate_dead_code
from canao.compiler.passes.fold_constants import fold_constants
from canao.compiler.passes.fuse_attention import fuse_attention
from canao.compiler.passes.merge_qkv import merge_qkv
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


def test_slices_read_through_are_removed():
    before = fuse_attention(fold_constants(merge_qkv(fold_constants(lowered(ENC)))))
    after = eliminate_dead_code(before)
    verify(after)
    assert before.op_counts()["slice_cols"] == 6 and "slice_cols" not in after.op_counts()
    assert_same_outputs(before, after)


def test_kv_append_is_kept_and_unused_constants_dropped():
    graph = lowered(DEC, "lm")
    pruned = eliminate_dead_code(graph.with_nodes(graph.nodes))
    assert pruned.op_counts()["kv_append"] == 4
    trimmed = eliminate_dead_code(
        graph.with_nodes(graph.nodes[:-1]).__class__(
            graph.inputs, ("l0_out",), graph.nodes, graph.types, graph.constants, graph.meta
        )
    )
    assert "final_norm.weight" not in trimmed.constants and trimmed.op_counts()["kv_append"] == 4
