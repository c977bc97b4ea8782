"""QKV merge: linears that read the same activation become one GEMM over concatenated weights.

Preconditions: linears appear as matmul(x, W) followed by add(., b) with W, b
constant (as lowered). For every activation read by two or more such
linears of equal input width (Q, K and V of one attention block), emits
  qkv_mm = matmul(x, concat_rows(W1, W2, ...)); qkv = add(qkv_mm, concat_rows(b1, b2, ...))
and turns each former linear output into slice_cols(qkv)[start, width].
One GEMM of width 3A instead of three of width A reads x once and gives the
kernel a wider N to tile. fold_constants then evaluates the concat_rows.
"""

from __future__ import annotations

from canao.compiler.ir import Graph, Node, TensorType, make_node
from canao.compiler.passes.common import single_consumer


def merge_qkv(graph: Graph) -> Graph:
    consumers = graph.consumers()
    groups: dict[str, list[tuple[Node, Node]]] = {}
    for node in graph.nodes:
        if node.op != "matmul" or node.inputs[1] not in graph.constants:
            continue
        add = single_consumer(graph, consumers, node.output)
        if add is not None and add.op == "add" and add.inputs[0] == node.output and add.inputs[1] in graph.constants:
            groups.setdefault(node.inputs[0], []).append((node, add))
    types = dict(graph.types)
    rewrites: dict[str, list[Node]] = {}  # first linear's matmul output -> nodes to emit there
    dropped: set[str] = set()
    for x, linears in groups.items():
        if len(linears) < 2:
            continue
        rows = types[linears[0][0].output].shape[0]
        w_cat, b_cat = graph.fresh_name(f"{x}.qkv_weight"), graph.fresh_name(f"{x}.qkv_bias")
        mm_out, out = graph.fresh_name(f"{x}_qkv_mm"), graph.fresh_name(f"{x}_qkv")
        width = sum(int(types[mm.inputs[1]].shape[0]) for mm, _ in linears)
        k = int(types[linears[0][0].inputs[1]].shape[1])
        types[w_cat], types[b_cat] = TensorType((width, k)), TensorType((width,))
        types[mm_out] = types[out] = TensorType((rows, width))
        source = linears[0][0].source.rsplit(".", 1)[0] + ".qkv"
        emitted = [
            make_node("concat_rows", tuple(mm.inputs[1] for mm, _ in linears), w_cat, source),
            make_node("concat_rows", tuple(add.inputs[1] for _, add in linears), b_cat, source),
            make_node("matmul", (x, w_cat), mm_out, source),
            make_node("add", (mm_out, b_cat), out, source),
        ]
        start = 0
        for mm, add in linears:
            n = int(types[mm.inputs[1]].shape[0])
            emitted.append(make_node("slice_cols", (out,), add.output, add.source, start=start, width=n))
            start += n
            dropped |= {mm.output, add.output}
        rewrites[linears[0][0].output] = emitted  # x is defined here and every reader comes later
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.output in rewrites:
            nodes.extend(rewrites[node.output])
        elif node.output not in dropped:
            nodes.append(node)
    return graph.with_nodes(nodes, types=types)
