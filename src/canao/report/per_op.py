"""Where a compiled model's time goes: every op of the final graph timed inside the native forward pass.

The generated C wraps each op in a wall-clock timer when it is compiled with -DCANAO_PROFILE
(codegen/c.py: PROFILED, canao_op_ms). `per_op_times` builds the artifact's graph that way (same passes,
tiles and precision as the deployed library), runs warm-up and `runs` forward passes and keeps each op's
median. `group_ops` folds the layers together (layers.3.ffn.up -> layers.*.ffn.up) so the table reads as
"what one kind of op costs in the whole model": each GEMM with its fused epilogue, fused attention,
LayerNorms, embedding gathers; with FLOPs and the achieved GFLOP/s. This is the breakdown to set beside
another runtime's performance counters to see which ops make a gap (docs/compiler.md).

Example::

    rows = group_ops(per_op_times(read_artifact_source("art").lowered(), BuildOptions(threads=2), 384))
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, replace

import numpy as np

from canao.compiler.build import BuildOptions, build
from canao.compiler.ir import Graph, Node

PROFILE_FLAG = "-DCANAO_PROFILE"
LAYER = re.compile(r"layers\.\d+\.")


@dataclass(frozen=True)
class OpTime:
    index: int
    op: str
    source: str  # the model module it came from (layers.0.ffn.up)
    detail: str  # epilogue or attention layout
    ms: float  # median over the timed runs
    gflop: float


@dataclass(frozen=True)
class OpGroup:
    name: str
    count: int  # ops folded together (one per layer)
    ms: float
    gflop: float

    @property
    def gflops_per_s(self) -> float:
        return self.gflop / (self.ms * 1e-3) if self.ms > 0 else 0.0


def _dim(value: object, seq_len: int, context: int) -> int:
    if isinstance(value, str):
        return {"T": seq_len, "S": context, "M": context}[value]
    return int(value)  # type: ignore[call-overload]


def op_gflop(graph: Graph, node: Node, seq_len: int, context: int) -> float:
    """Multiply-add FLOPs of a GEMM or an attention op (others: 0; they are bound by memory)."""
    shape_in = [_dim(d, seq_len, context) for d in graph.types[node.inputs[0]].shape]
    shape_out = [_dim(d, seq_len, context) for d in graph.types[node.output].shape]
    if node.op == "gemm":
        rows = int(np.prod(shape_out[:-1])) if len(shape_out) > 1 else 1
        return 2.0 * rows * shape_in[-1] * shape_out[-1] / 1e9
    if node.op == "attention":
        width = int(node.attr("heads")) * int(node.attr("head_dim"))
        return 4.0 * seq_len * context * width / 1e9
    return 0.0


def _detail(node: Node) -> str:
    if node.op == "gemm":  # a LayerNorm step without its epsilon: the label names what runs, not its constants
        return "+".join(
            step.split(":")[0] if step.startswith("layer_norm:") else step for step in node.attr("epilogue") or ()
        )
    if node.op == "attention":
        return f"{node.attr('heads')}x{node.attr('head_dim')}" + (" causal" if node.attr("causal") else "")
    return ""


def per_op_times(
    lowered: Graph, options: BuildOptions, seq_len: int, *, runs: int = 20, warmup: int = 3, fuse: bool = True
) -> list[OpTime]:
    """Each op's median wall time (ms) over `runs` encoder forward passes of `seq_len` tokens
    (`fuse=False`: built without the optional fusions, to show what they save)."""
    profiled = build(lowered, replace(options, extra_flags=tuple(options.extra_flags) + (PROFILE_FLAG,)), fuse=fuse)
    model = profiled.load()
    lib = model.library.lib
    lib.canao_op_ms.restype = ctypes.c_double
    lib.canao_op_ms.argtypes = [ctypes.c_int]
    graph = profiled.graph
    ids = np.random.default_rng(0).integers(0, model.spec.vocab_size, (1, seq_len))
    samples = []
    for r in range(warmup + runs):
        model.run(ids)
        if r >= warmup:
            samples.append([lib.canao_op_ms(i) for i in range(len(graph.nodes))])
    medians = np.median(np.array(samples), axis=0)
    return [
        OpTime(i, n.op, n.source or n.output, _detail(n), float(medians[i]), op_gflop(graph, n, seq_len, seq_len))
        for i, n in enumerate(graph.nodes)
    ]


def group_ops(times: list[OpTime]) -> list[OpGroup]:
    """Ops of the same kind across layers folded together, most expensive first."""
    groups: dict[str, list[OpTime]] = {}
    for t in times:
        module = LAYER.sub("layers.*.", t.source)
        name = f"{module} {t.op}" + (f" [{t.detail}]" if t.detail else "")
        groups.setdefault(name, []).append(t)
    rows = [OpGroup(k, len(v), sum(t.ms for t in v), sum(t.gflop for t in v)) for k, v in groups.items()]
    return sorted(rows, key=lambda g: -g.ms)
