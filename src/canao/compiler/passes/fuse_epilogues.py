"""LP-Fusion of GEMM epilogues: bias, residual add, GELU/tanh and scaling run inside the GEMM.

CANAO's LP-Fusion (arXiv 2009.06823, Sec. 4) fuses the elementwise and
polynomial ops that follow a matrix multiply into it, so their inputs are
applied to the output tile while it is still in registers/cache instead of
making another pass over memory. Preconditions: matmul(x, W) with W constant.
The pass follows the single-use chain after the matmul while the next op is
  add with a constant row vector        -> "bias"
  add with an activation of equal shape -> "residual" (either operand order)
  gelu / tanh / scale                   -> "gelu"|"gelu_tanh" / "tanh" / "scale:<f>"
and emits one gemm(x, W, *extras)[epilogue] at the place of the chain's
last op (every extra input is defined before it). A matmul with no
fusible successor becomes a gemm with an empty epilogue.
"""

from __future__ import annotations

from typing import Optional

from canao.compiler.ir import Graph, Node, make_node
from canao.compiler.passes.common import single_consumer


def _step(graph: Graph, node: Node, current: str) -> Optional[tuple[str, tuple[str, ...]]]:
    """The epilogue step `node` adds to a chain whose value so far is `current` (None: not fusible)."""
    if node.op in ("gelu",):
        return node.attr("form"), ()
    if node.op == "tanh":
        return "tanh", ()
    if node.op == "scale":
        return f"scale:{node.attr('factor')!r}", ()
    if node.op != "add" or current not in node.inputs or node.inputs[0] == node.inputs[1]:
        return None
    other = node.inputs[1] if node.inputs[0] == current else node.inputs[0]
    other_type, out_type = graph.types[other], graph.types[current]
    if other in graph.constants and other_type.shape == out_type.shape[-1:]:
        return "bias", (other,)
    if other not in graph.constants and other_type.shape == out_type.shape:
        return "residual", (other,)
    return None


def fuse_epilogues(graph: Graph) -> Graph:
    consumers = graph.consumers()
    placed: dict[str, Node] = {}  # output of the chain's last op -> fused gemm
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op != "matmul" or node.inputs[1] not in graph.constants:
            continue
        steps: list[str] = []
        extras: list[str] = []
        current, chain = node.output, [node.output]
        while (nxt := single_consumer(graph, consumers, current)) is not None:
            step = _step(graph, nxt, current)
            if step is None:
                break
            steps.append(step[0])
            extras.extend(step[1])
            current = nxt.output
            chain.append(current)
        dropped |= set(chain[:-1])
        placed[current] = make_node(
            "gemm", (node.inputs[0], node.inputs[1], *extras), current, node.source, epilogue=tuple(steps), packed=""
        )
    nodes = [placed.get(n.output, n) for n in graph.nodes if n.output not in dropped]
    return graph.with_nodes(nodes)
