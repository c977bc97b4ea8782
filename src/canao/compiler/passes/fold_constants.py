"""Constant folding: evaluate ops on constants, and fold a scale after a linear into its weights.

Preconditions: none. Two rewrites:
1. a pure node whose inputs are all constants becomes a constant (evaluated
   by the reference executor, so the meaning cannot drift), e.g. the
   concat_rows that merge_qkv emits;
2. scale(add(matmul(x, W), b))[f] with W, b constant and single-use
   intermediates becomes add(matmul(x, f*W), f*b): the attention scale
   1/sqrt(head_dim) then costs nothing at run time.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from canao.compiler.ir import Graph, Node, TensorType
from canao.compiler.passes.common import single_consumer

# Ops whose result depends on more than their inputs (run-time T/past, or side effects).
_IMPURE = frozenset({"pos_embed", "kv_append"})


def fold_constants(graph: Graph) -> Graph:
    from canao.compiler.reference import OPS, _Context

    constants, types = dict(graph.constants), dict(graph.types)
    consumers = graph.consumers()
    rewrites: dict[str, Optional[Node]] = {}  # node output -> replacement (None: drop)
    for node in graph.nodes:
        if node.op == "matmul" and node.inputs[1] in constants and node.output not in rewrites:
            rewrites.update(_fold_scale(graph, node, consumers, constants, types))
    nodes: list[Node] = []
    for original in graph.nodes:
        rewritten = rewrites.get(original.output, original)
        if rewritten is None:
            continue
        node = rewritten
        if node.op not in _IMPURE and node.inputs and all(i in constants for i in node.inputs):
            value = OPS[node.op](_Context(graph, {}, 0), node, *(constants[i] for i in node.inputs))
            constants[node.output] = np.ascontiguousarray(value, dtype=np.float32)
            types[node.output] = TensorType(tuple(int(d) for d in constants[node.output].shape))
            continue
        nodes.append(node)
    return graph.with_nodes(nodes, types=types, constants=constants)


def _fold_scale(graph: Graph, mm: Node, consumers: dict, constants: dict, types: dict) -> dict[str, Optional[Node]]:
    """Rewrites folding scale(add(mm, b)) into mm's weights and bias; {} if the pattern is absent."""
    add = single_consumer(graph, consumers, mm.output)
    if add is None or add.op != "add" or add.inputs[0] != mm.output or add.inputs[1] not in constants:
        return {}
    scale = single_consumer(graph, consumers, add.output)
    if scale is None or scale.op != "scale":
        return {}
    f = np.float32(scale.attr("factor"))
    w_name = graph.fresh_name(f"{mm.inputs[1]}*scale")
    b_name = graph.fresh_name(f"{add.inputs[1]}*scale")
    constants[w_name], constants[b_name] = constants[mm.inputs[1]] * f, constants[add.inputs[1]] * f
    types[w_name], types[b_name] = types[mm.inputs[1]], types[add.inputs[1]]
    return {
        mm.output: Node("matmul", (mm.inputs[0], w_name), mm.output, mm.attrs, mm.source),
        add.output: Node("add", (mm.output, b_name), scale.output, add.attrs, add.source),
        scale.output: None,
    }
