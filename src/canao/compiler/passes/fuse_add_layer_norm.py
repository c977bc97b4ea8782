"""Residual add + LayerNorm in one pass over each row.

Preconditions: layer_norm(add(a, b)) where a and b are activations of equal
shape and the add has no other reader (post-LN BERT blocks, embeddings).
Emits add_layer_norm(a, b, gamma, beta): the sum is formed, its mean and
variance taken and the row normalised while the row is in cache, and the sum
is never stored.
"""

from __future__ import annotations

from canao.compiler.ir import Graph, make_node
from canao.compiler.passes.common import single_consumer


def fuse_add_layer_norm(graph: Graph) -> Graph:
    consumers, producer = graph.consumers(), graph.producer()
    fused, dropped = {}, set()
    for node in graph.nodes:
        if node.op != "layer_norm":
            continue
        add = producer.get(node.inputs[0])
        if add is None or add.op != "add" or single_consumer(graph, consumers, add.output) is not node:
            continue
        a, b = add.inputs
        if a in graph.constants or b in graph.constants or graph.types[a].shape != graph.types[b].shape:
            continue
        fused[node.output] = make_node(
            "add_layer_norm", (a, b, *node.inputs[1:]), node.output, node.source, eps=node.attr("eps")
        )
        dropped.add(add.output)
    return graph.with_nodes([fused.get(n.output, n) for n in graph.nodes if n.output not in dropped])
