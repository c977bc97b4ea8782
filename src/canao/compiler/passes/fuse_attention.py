"""Fused attention: scores -> mask -> softmax -> context becomes one `attention` op.

Preconditions: the chain attn_scores(q, k) -> attn_mask -> softmax ->
attn_context(., v) with single-use intermediates (as lowered). The fused op
computes each query row's softmax(q k^T + mask) v with one row of scores at
a time, so no [heads, T, S] tensor is written to memory (FlashAttention's
point, Dao et al. 2022, at the granularity of a row). Q, K and V that are
slice_cols of a merged QKV GEMM are read in place at their column offsets,
and so are the new keys/values a kv_append copies into the cache.
With graph.meta["matmul_precision"] "bf16" or "int8" the fused op gets
precision="bf16": its two products (q k^T and p v) read bf16-rounded
operands with fp32 sums; softmax stays fp32. (int8 GEMMs keep bf16 here:
both operands change with every input, so they cannot be quantized ahead,
and bf16 keeps attention accurate where an 8-bit p would not.)
"""

from __future__ import annotations

from canao.compiler.ir import Graph, Node, make_node
from canao.compiler.passes.common import single_consumer, with_attrs


def _through_slice(producer: dict[str, Node], value: str) -> tuple[str, int]:
    """(source, column offset): looks through a slice_cols to the tensor it views."""
    node = producer.get(value)
    if node is not None and node.op == "slice_cols":
        return node.inputs[0], node.attr("start")
    return value, 0


def fuse_attention(graph: Graph) -> Graph:
    consumers, producer = graph.consumers(), graph.producer()
    fused: dict[str, Node] = {}  # attn_context output -> fused node
    dropped: set[str] = set()
    extra = {"precision": "bf16"} if graph.meta.get("matmul_precision") in ("bf16", "int8") else {}
    for node in graph.nodes:
        if node.op != "attn_scores":
            continue
        mask = single_consumer(graph, consumers, node.output)
        soft = mask and single_consumer(graph, consumers, mask.output)
        ctx = soft and single_consumer(graph, consumers, soft.output)
        if not (mask and soft and ctx and mask.op == "attn_mask" and soft.op == "softmax" and ctx.op == "attn_context"):
            continue
        (q, q_start), (k, k_start), (v, v_start) = (
            _through_slice(producer, x) for x in (node.inputs[0], node.inputs[1], ctx.inputs[1])
        )
        fused[ctx.output] = make_node(
            "attention",
            (q, k, v, *mask.inputs[1:]),
            ctx.output,
            node.source,
            heads=node.attr("heads"),
            head_dim=node.attr("head_dim"),
            causal=mask.attr("causal"),
            q_start=q_start,
            k_start=k_start,
            v_start=v_start,
            **extra,
        )
        dropped |= {node.output, mask.output, soft.output}
    nodes = []
    for node in graph.nodes:
        if node.output in dropped:
            continue
        if node.op == "kv_append":
            source, start = _through_slice(producer, node.inputs[1])
            if start or source != node.inputs[1]:
                node = with_attrs(
                    Node(node.op, (node.inputs[0], source), node.output, node.attrs, node.source),
                    start=node.attr("start") + start,
                )
        nodes.append(fused.get(node.output, node))
    return graph.with_nodes(nodes)
