"""The pass pipeline, in order. Each pass is a pure Graph -> Graph function in its own module.

Order matters: the scale fold must see the separate Q linear before the QKV
merge hides it; the concat_rows the merge emits are folded right after;
attention is fused before LP-Fusion so slice views are read in place;
LP-Fusion takes residual adds before add+LayerNorm fusion looks for them, and the LayerNorms left
after GEMMs go into them last;
packing needs the final GEMMs; memory is planned on the final node order.

Example::

    final = run_pipeline(lower_model(model), nr=16)
    for name, graph in run_pipeline_stages(lower_model(model)): print(name, graph.op_counts())
"""

from __future__ import annotations

from typing import Callable, Iterator

from canao.compiler.ir import Graph, verify
from canao.compiler.layout import Precision
from canao.compiler.passes.eliminate_dead_code import eliminate_dead_code
from canao.compiler.passes.fold_constants import fold_constants
from canao.compiler.passes.fuse_add_layer_norm import fuse_add_layer_norm
from canao.compiler.passes.fuse_attention import fuse_attention
from canao.compiler.passes.fuse_epilogues import fuse_epilogues
from canao.compiler.passes.fuse_gemm_layer_norm import fuse_gemm_layer_norm
from canao.compiler.passes.merge_qkv import merge_qkv
from canao.compiler.passes.pack_weights import pack_weights
from canao.compiler.passes.plan_memory import plan_memory

Pass = Callable[[Graph], Graph]

PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("fold_constants", fold_constants),
    ("merge_qkv", merge_qkv),
    ("fold_constants_after_merge", fold_constants),
    ("fuse_attention", fuse_attention),
    ("fuse_epilogues", fuse_epilogues),
    ("fuse_add_layer_norm", fuse_add_layer_norm),
    ("fuse_gemm_layer_norm", fuse_gemm_layer_norm),
    ("eliminate_dead_code", eliminate_dead_code),
    ("pack_weights", pack_weights),
    ("plan_memory", plan_memory),
)
# The fusions a model still runs without (reports show the time they save). Attention stays fused: the code
# generator has no kernels for its unfused score/mask/softmax/context ops.
OPTIONAL_FUSIONS = frozenset(
    {"merge_qkv", "fold_constants_after_merge", "fuse_epilogues", "fuse_add_layer_norm", "fuse_gemm_layer_norm"}
)


def run_pipeline_stages(
    graph: Graph,
    *,
    nr: int = 16,
    precision: str | Precision = Precision.FP32,
    check: bool = True,
    fuse: bool = True,
) -> Iterator[tuple[str, Graph]]:
    """Yield ("lowered", graph) and then each pass's name and output graph.

    `precision` is the matrix-product precision (canao.compiler.layout.Precision; see pack_weights);
    `fuse=False` skips OPTIONAL_FUSIONS (to measure what they save)."""
    graph = graph.with_nodes(graph.nodes, gemm_nr=nr, matmul_precision=Precision.parse(precision).value)
    yield "lowered", graph
    for name, fn in PIPELINE:
        if not fuse and name in OPTIONAL_FUSIONS:
            continue
        graph = fn(graph)
        if check:
            verify(graph)
        yield name, graph


def run_pipeline(
    graph: Graph,
    *,
    nr: int = 16,
    precision: str | Precision = Precision.FP32,
    check: bool = True,
    fuse: bool = True,
) -> Graph:
    """The final graph: every pass of PIPELINE applied in order (`fuse=False`: without OPTIONAL_FUSIONS)."""
    final = graph
    for _, stage in run_pipeline_stages(graph, nr=nr, precision=precision, check=check, fuse=fuse):
        final = stage
    return final
