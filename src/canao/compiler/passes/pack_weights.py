"""Weight pre-packing: GEMM weights are rearranged at compile time into the kernel's panel layout.

Preconditions: fuse_epilogues has run (weights are read by `gemm`; a bare
matmul with a constant weight is turned into an epilogue-free gemm here).
graph.meta["gemm_nr"] gives the panel width NR the code generator's
micro-kernel uses (2 SIMD vectors); graph.meta["matmul_precision"] ("fp32",
the default, "bf16" or "int8") whether GEMM weights keep fp32, are rounded to
bf16 pairs for the bf16 kernels (which also round the activations they read;
they accumulate in fp32), or are quantized per output column to int8 for the
int8 kernels (which quantize each activation row to uint8 when they run and
accumulate in int32). Embeddings, LayerNorm and softmax stay fp32.
See canao.compiler.layout.
"""

from __future__ import annotations

from canao.compiler.ir import Graph, Node, TensorType
from canao.compiler.layout import Precision, parse_layout
from canao.compiler.passes.common import with_attrs

DEFAULT_NR = 16


def packed_precision(node: Node) -> Precision:
    """The precision a gemm's weights were packed for, read from its `packed` layout (unpacked: fp32)."""
    layout = str(node.attr("packed", ""))
    return parse_layout(layout)[0] if layout else Precision.FP32


def pack_weights(graph: Graph) -> Graph:
    nr = int(graph.meta.get("gemm_nr", DEFAULT_NR))
    precision = Precision.parse(graph.meta.get("matmul_precision", "fp32"))
    layout, pack = precision.layout.name(nr), precision.layout.pack
    constants, types = dict(graph.constants), dict(graph.types)
    nodes = []
    for node in graph.nodes:
        if node.op == "matmul" and node.inputs[1] in constants:
            node = Node("gemm", node.inputs, node.output, (("epilogue", ()), ("packed", "")), node.source)
        if node.op == "gemm" and not node.attr("packed") and node.inputs[1] in constants:
            name = f"{node.inputs[1]}@{layout}"
            if name not in constants:
                constants[name] = pack(constants[node.inputs[1]], nr)
                types[name] = TensorType(tuple(int(d) for d in constants[name].shape))
            node = with_attrs(
                Node(node.op, (node.inputs[0], name, *node.inputs[2:]), node.output, node.attrs, node.source),
                packed=layout,
            )
        nodes.append(node)
    return graph.with_nodes(nodes, types=types, constants=constants)
