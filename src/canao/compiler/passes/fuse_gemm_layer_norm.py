"""LayerNorm of a GEMM's output inside the GEMM.

Preconditions: layer_norm(g) where g is a gemm whose only reader is the LayerNorm (post-LN encoder blocks
after LP-Fusion took the residual add: attention output and FFN down projections) and gamma, beta are
constants. Emits gemm(x, W, *extras, gamma, beta)[epilogue + "layer_norm:<eps>"] at the LayerNorm's place:
the kernel normalises each row of C in place once the row is complete. Why: where a GEMM's threads own whole
row bands (the AMX kernels from 2 blocks of 32 rows a thread), each thread normalises its own rows while they
are in its cache and no separate parallel region runs -- with sleeping OpenMP threads (canao's PASSIVE
default) every region costs a thread wake-up (~60 us on a VM), and a post-LN encoder has two LayerNorms a
layer. Elsewhere the kernel runs the same normalisation as a pass after the product (no loss).
"""

from __future__ import annotations

from canao.compiler.ir import Graph, Node
from canao.compiler.passes.common import single_consumer, with_attrs


def fuse_gemm_layer_norm(graph: Graph) -> Graph:
    consumers, producer = graph.consumers(), graph.producer()
    fused: dict[str, Node] = {}
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op != "layer_norm":
            continue
        x, gamma, beta = node.inputs
        gemm = producer.get(x)
        if gemm is None or gemm.op != "gemm" or single_consumer(graph, consumers, x) is not node:
            continue
        if gamma not in graph.constants or beta not in graph.constants:
            continue
        if any(step.startswith("layer_norm:") for step in gemm.attr("epilogue")):
            continue
        epilogue = (*gemm.attr("epilogue"), f"layer_norm:{float(node.attr('eps'))!r}")
        merged = with_attrs(gemm, epilogue=epilogue)
        fused[node.output] = Node(
            "gemm", (*gemm.inputs, gamma, beta), node.output, merged.attrs, gemm.source or node.source
        )
        dropped.add(gemm.output)
    return graph.with_nodes([fused.get(n.output, n) for n in graph.nodes if n.output not in dropped])
