"""C code generation: a planned graph -> one self-contained, readable C file.

The file holds the kernels (canao_kernels.h, inlined so an artifact's
kernel.c compiles alone), one static function per IR node commented with the
node it came from, and the entry points:

  int canao_forward(W, arena, ids, type_ids, mask, caches, T, past, x)  0 or an error code
      (x: the float input of a block graph, whose input is hidden states instead of ids)
  const char *canao_error_message(int code)
  int canao_vector_width(void); long canao_arena_floats(void); long canao_weight_floats(void)
  const char *canao_graph_hash(void); void canao_set_threads(int n)

Weights live in one float blob (offsets from `weight_layout`), activations in
one arena at the offsets plan_memory chose, so the generated code does no
allocation. Preconditions: the full pass pipeline has run (gemm weights
packed, attention fused, memory planned).

Example::

    source = generate_c(final_graph)
    blob = weight_blob(final_graph)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from canao.compiler.abi import ABI_VERSION, ERRORS
from canao.compiler.ir import Graph, IRError, Node, TensorType, graph_hash
from canao.compiler.layout import Precision
from canao.compiler.passes.pack_weights import packed_precision
from canao.compiler.passes.plan_memory import ALIGN_FLOATS
from canao.device import SIMD_LEVELS

KERNELS_H = Path(__file__).with_name("canao_kernels.h")
DEFAULT_MR = SIMD_LEVELS["scalar"].default_mr  # of graphs that do not name theirs (meta "default_mr")
_EPILOGUE_CODES = {
    "bias": "EPI_BIAS",
    "residual": "EPI_RESIDUAL",
    "gelu": "EPI_GELU",
    "gelu_tanh": "EPI_GELU_TANH",
    "tanh": "EPI_TANH",
}
_ACTIVATION_CODES = {"gelu": "EPI_GELU", "gelu_tanh": "EPI_GELU_TANH", "tanh": "EPI_TANH", "scale": "EPI_SCALE"}


def weight_layout(graph: Graph) -> tuple[dict[str, int], int]:
    """Offset (in floats, 64-byte aligned) of every constant in the weight blob, and the blob size."""
    return constant_offsets(sorted(graph.constants), graph.types)


def constant_offsets(names: list[str], types: Mapping[str, TensorType]) -> tuple[dict[str, int], int]:
    """The blob layout: constants in name order, each starting on a 64-byte boundary."""
    offsets, cursor = {}, 0
    for name in sorted(names):
        offsets[name] = cursor
        cursor += -(-math.prod(int(d) for d in types[name].shape) // ALIGN_FLOATS) * ALIGN_FLOATS
    return offsets, cursor


def constants_from_blob(names: list[str], types: Mapping[str, TensorType], blob: np.ndarray) -> dict[str, np.ndarray]:
    """Views of each constant inside a loaded weight blob (no copies)."""
    offsets, total = constant_offsets(names, types)
    if blob.size != total:
        raise IRError(f"the weight blob holds {blob.size} floats, but the graph's constants need {total}.")
    return {
        name: blob[offsets[name] : offsets[name] + math.prod(int(d) for d in types[name].shape)].reshape(
            tuple(int(d) for d in types[name].shape)
        )
        for name in names
    }


def weight_blob(graph: Graph) -> np.ndarray:
    offsets, total = weight_layout(graph)
    blob = np.zeros(total, dtype=np.float32)
    for name, offset in offsets.items():
        array = graph.constants[name]
        blob[offset : offset + array.size] = array.ravel()
    return blob


class _Names:
    """C expressions for IR values: weights, arena buffers, inputs and caches."""

    def __init__(self, graph: Graph, default_mr: int) -> None:
        self.graph, self.default_mr = graph, default_mr
        self.weights, _ = weight_layout(graph)
        self.plan = graph.meta["memory_plan"]
        self.caches = [name for name in graph.inputs if name.startswith("cache_")]
        self.aliases = {n.output: n.inputs[0] for n in graph.nodes if n.op == "kv_append"}

    def ptr(self, value: str) -> str:
        value = self.aliases.get(value, value)
        if value in self.weights:
            return f"(c->W + {self.weights[value]})"
        if value in self.plan:
            return f"(c->arena + {self.plan[value]})"
        if value in self.caches:
            return f"c->caches[{self.caches.index(value)}]"
        inputs = {"input_ids": "c->ids", "token_type_ids": "c->type_ids", "mask": "c->mask", "hidden_in": "c->x"}
        if value in inputs:
            return inputs[value]
        raise IRError(f"value `{value}` has no storage; run plan_memory before code generation.")

    def rows(self, value: str) -> str:
        dim = self.graph.types[value].shape[0]
        return {"T": "c->T", "S": "c->S", "M": "MAX_POSITIONS"}.get(dim, str(dim)) if isinstance(dim, str) else str(dim)

    def width(self, value: str) -> int:
        shape = self.graph.types[value].shape
        return int(shape[-1]) if len(shape) > 1 else 1


def _gemm(n: Node, v: _Names) -> list[str]:
    x, w, *extras = n.inputs
    if not n.attr("packed"):
        raise IRError(f"gemm `{n.output}` has unpacked weights; run pack_weights first.")
    k, out_n = v.width(x), v.width(n.output)
    steps, bias, residual, scale, extras = [], "NULL", "NULL", "1.0f", list(extras)
    norm = "NULL, NULL, 0.0f"
    for step in n.attr("epilogue"):
        if step.startswith("layer_norm:"):  # not a per-element step: the kernel normalises finished rows
            gamma, beta = extras.pop(0), extras.pop(0)
            norm = f"{v.ptr(gamma)}, {v.ptr(beta)}, {float(step.split(':', 1)[1])!r}f"
            continue
        if step.startswith("scale:"):
            steps.append("EPI_SCALE")
            scale = f"{float(step.split(':', 1)[1])!r}f"
            continue
        steps.append(_EPILOGUE_CODES[step])
        if step == "bias":
            bias = v.ptr(extras.pop(0))
        elif step == "residual":
            residual = v.ptr(extras.pop(0))
    args = (
        f"{v.ptr(x)}, {k}, {v.ptr(w)}, {k}, {out_n}, {v.ptr(n.output)}, {out_n}, {v.rows(x)}, &e, "
        f"{n.attr('mr', v.default_mr)}, {n.attr('kc', 0)}"
    )
    precision = packed_precision(n)
    call = f"{precision.layout.gemm_kernel}({args});"
    if precision != Precision.FP32:  # the bf16 and int8 kernels allocate scratch and report failure
        call = f"int status = {precision.layout.gemm_kernel}({args});\nif (status) *c->err = status;"
    return [
        f"const Epilogue e = {{{{{', '.join(steps + ['EPI_END'])}}}, {bias}, {residual}, {out_n}, {scale}, {norm}}};",
        *call.split("\n"),
    ]


def _attention(n: Node, v: _Names) -> list[str]:
    q, k, val, *mask = n.inputs
    return [
        f"int status = attention({v.ptr(q)} + {n.attr('q_start')}, {v.width(q)}, "
        f"{v.ptr(k)} + {n.attr('k_start')}, {v.width(k)}, "
        f"{v.ptr(val)} + {n.attr('v_start')}, {v.width(val)}, {v.ptr(mask[0]) if mask else 'NULL'}, "
        f"{v.ptr(n.output)}, {v.width(n.output)}, c->T, c->S, c->past, {n.attr('heads')}, {n.attr('head_dim')}, "
        f"{1 if n.attr('causal') else 0}, {1 if n.attr('precision', 'fp32') == 'bf16' else 0});",
        "if (status) *c->err = status;",
    ]


def _gather(n: Node, v: _Names) -> list[str]:
    table, ids = n.inputs
    h = v.width(n.output)
    return [
        "for (int t = 0; t < c->T; ++t)",
        f"    memcpy({v.ptr(n.output)} + (size_t)t * {h}, {v.ptr(table)} + (size_t){v.ptr(ids)}[t] * {h}, "
        f"{h} * sizeof(float));",
    ]


def _add(n: Node, v: _Names) -> list[str]:
    a, b = n.inputs
    h = v.width(n.output)
    broadcast = len(v.graph.types[b].shape) == 1
    rhs = f"{v.ptr(b)}[i % {h}]" if broadcast else f"{v.ptr(b)}[i]"
    return [f"for (long i = 0; i < (long){v.rows(n.output)} * {h}; ++i) {v.ptr(n.output)}[i] = {v.ptr(a)}[i] + {rhs};"]


def _activation(n: Node, v: _Names) -> list[str]:
    kind = n.attr("form") if n.op == "gelu" else n.op
    factor = f"{float(n.attr('factor'))!r}f" if n.op == "scale" else "1.0f"
    return [
        f"activation({v.ptr(n.inputs[0])}, {v.ptr(n.output)}, (long){v.rows(n.output)} * {v.width(n.output)}, "
        f"{_ACTIVATION_CODES[kind]}, {factor});"
    ]


def _layer_norm(n: Node, v: _Names) -> list[str]:
    if n.op == "add_layer_norm":
        x, r, g, b = n.inputs
    else:
        (x, g, b), r = n.inputs, None
    return [
        f"add_layer_norm({v.ptr(x)}, {v.ptr(r) if r else 'NULL'}, {v.ptr(g)}, {v.ptr(b)}, {v.ptr(n.output)}, "
        f"{v.rows(x)}, {v.width(x)}, {float(n.attr('eps'))!r}f);"
    ]


def _copy_rows(n: Node, v: _Names) -> list[str]:
    """pos_embed, row, slice_cols and kv_append: row copies with offsets."""
    out, h = v.ptr(n.output), v.width(n.output)
    if n.op == "pos_embed":
        return [f"memcpy({out}, {v.ptr(n.inputs[0])} + (size_t)c->past * {h}, (size_t)c->T * {h} * sizeof(float));"]
    if n.op == "row":
        row = "0" if n.attr("index") == 0 else "(c->T - 1)"
        return [f"memcpy({out}, {v.ptr(n.inputs[0])} + (size_t){row} * {h}, {h} * sizeof(float));"]
    src = n.inputs[0] if n.op == "slice_cols" else n.inputs[1]
    dst_row = "t" if n.op == "slice_cols" else "(c->past + t)"
    return [
        "for (int t = 0; t < c->T; ++t)",
        f"    memcpy({out} + (size_t){dst_row} * {h}, {v.ptr(src)} + (size_t)t * {v.width(src)} + {n.attr('start')}, "
        f"{h} * sizeof(float));",
    ]


_EMITTERS: dict[str, Callable[[Node, _Names], list[str]]] = {
    "gemm": _gemm,
    "attention": _attention,
    "gather": _gather,
    "add": _add,
    "gelu": _activation,
    "tanh": _activation,
    "scale": _activation,
    "layer_norm": _layer_norm,
    "add_layer_norm": _layer_norm,
    "pos_embed": _copy_rows,
    "row": _copy_rows,
    "slice_cols": _copy_rows,
    "kv_append": _copy_rows,
}


def _id_bounds(graph: Graph) -> dict[str, int]:
    """For each integer input, the smallest table it indexes (ids must be below it)."""
    bounds: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "gather":
            rows = int(graph.types[n.inputs[0]].shape[0])
            bounds[n.inputs[1]] = min(rows, bounds.get(n.inputs[1], rows))
    return bounds


def _entry(graph: Graph, functions: list[str]) -> list[str]:
    bounds = _id_bounds(graph)
    # written so that no sum can overflow, whatever ints a caller passes
    checks = ["    if (T < 1 || past < 0 || past > MAX_POSITIONS || T > MAX_POSITIONS - past) return 1;"]
    for name, code, ptr in (("input_ids", 2, "ids"), ("token_type_ids", 3, "type_ids")):
        if name in bounds:
            checks.append(
                f"    for (int t = 0; t < T; ++t) if ({ptr}[t] < 0 || {ptr}[t] >= {bounds[name]}) return {code};"
            )
    messages = "\n".join(f'    case {k}: return "{m}";' for k, m in ERRORS.items())
    return [
        "int canao_forward(const float *W, float *arena, const int32_t *ids, const int32_t *type_ids,",
        "                  const float *mask, float *const *caches, int T, int past, const float *x) {",
        *checks,
        "    int err = 0;",
        "    const Ctx ctx = {W, arena, ids, type_ids, mask, caches, T, past + T, past, &err, x};",
        "    const Ctx *c = &ctx;",
        *[f"    PROFILED({i}, {fn}(c));" for i, fn in enumerate(functions)],
        "    return err;",
        "}",
        "",
        "/* Per-op wall time of the last call, in ms (all zero unless built with -DCANAO_PROFILE). */",
        f"double canao_op_ms(int i) {{ return i >= 0 && i < {len(functions)} ? profile_ms[i] : -1.0; }}",
        "",
        "const char *canao_error_message(int code) {",
        "    switch (code) {",
        messages,
        '    default: return "unknown error";',
        "    }",
        "}",
    ]


def _count_expr(graph: Graph, name: str) -> str:
    """C expression for the number of floats of value `name` given T and past."""
    dims = [
        {"T": "T", "S": "(past + T)", "M": "MAX_POSITIONS"}.get(d, str(d)) if isinstance(d, str) else str(d)
        for d in graph.types[name].shape
    ]
    return " * ".join(f"(long){d}" for d in dims) or "1L"


def _describe_io(graph: Graph) -> list[str]:
    """Entry points that tell a C program (runner, profiler, export) the model's inputs, caches and outputs."""
    caches = [n for n in graph.inputs if n.startswith("cache_")]
    plan = graph.meta["memory_plan"]
    hidden = int(graph.types["hidden_in"].shape[1]) if "hidden_in" in graph.types else 0
    cache_sizes = [f"(long)MAX_POSITIONS * {int(graph.types[c].shape[1])}" for c in caches]

    def table(values: list[str]) -> str:
        return ", ".join(values) or "0"

    def cases(exprs: list[str]) -> list[str]:
        return [f"    case {i}: return {e};" for i, e in enumerate(exprs)]

    return [
        "int canao_max_positions(void) { return MAX_POSITIONS; }",
        f"int canao_num_caches(void) {{ return {len(caches)}; }}",
        f"static const long cache_floats_[] = {{{table(cache_sizes)}}};",
        f"long canao_cache_floats(int i) {{ return i >= 0 && i < {len(caches)} ? cache_floats_[i] : 0L; }}",
        f"int canao_num_outputs(void) {{ return {len(graph.outputs)}; }}",
        f"static const long output_offsets_[] = {{{table([f'{plan.get(o, -1)}L' for o in graph.outputs])}}};",
        f"long canao_output_offset(int i) {{ return i >= 0 && i < {len(graph.outputs)} ? output_offsets_[i] : -1L; }}",
        "long canao_output_floats(int i, int T, int past) {",
        "    (void)T; (void)past;",
        "    switch (i) {",
        *cases([_count_expr(graph, o) for o in graph.outputs]),
        "    default: return 0L;",
        "    }",
        "}",
        f"int canao_id_bound(void) {{ return {_id_bounds(graph).get('input_ids', 1)}; }}",
        f"int canao_hidden_in_width(void) {{ return {hidden}; }}",
    ]


def generate_c(graph: Graph) -> str:
    """The whole model as C source (kernels inlined); untuned GEMMs use the graph's meta "default_mr"."""
    if "memory_plan" not in graph.meta:
        raise IRError("the graph has no memory plan; run the full pass pipeline before code generation.")
    mr = int(graph.meta.get("default_mr", DEFAULT_MR))
    names = _Names(graph, mr)
    _, weight_floats = weight_layout(graph)
    spec = graph.meta.get("spec", {})
    lines = [
        f"/* canao generated model: {spec.get('kind', '?')} hidden {spec.get('hidden', '?')}, "
        f"{len(spec.get('layers', []))} layers, task {graph.meta.get('task')}.",
        f" * graph {graph_hash(graph)}: {len(graph.nodes)} ops {graph.op_counts()}",
        f" * arena {graph.meta['arena_floats']} floats, weights {weight_floats} floats. Do not edit: regenerate. */",
        f"#define CANAO_DEFAULT_MR {mr}",
        KERNELS_H.read_text(),
        f"#define MAX_POSITIONS {int(graph.meta['max_positions'])}",
        f"#define PACKED_NR {int(graph.meta.get('gemm_nr', 16))}",
        "#if NR != PACKED_NR",
        '#error "weights were packed for another SIMD width: compile with the flags of their target"',
        "#endif",
        "",
        f"static double profile_ms[{max(len(graph.nodes), 1)}];",
        "#ifdef CANAO_PROFILE",
        "#include <time.h>",
        "static double now_ms(void) {",
        "    struct timespec t;",
        "    clock_gettime(CLOCK_MONOTONIC, &t);",
        "    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;",
        "}",
        "#define PROFILED(i, call) do { double t0_ = now_ms(); call; profile_ms[i] = now_ms() - t0_; } while (0)",
        "#else",
        "#define PROFILED(i, call) call",
        "#endif",
        "",
        "typedef struct {",
        "    const float *W; float *arena; const int32_t *ids; const int32_t *type_ids; const float *mask;",
        "    float *const *caches; int T; int S; int past; int *err; const float *x;",
        "} Ctx;",
        "",
    ]
    functions = []
    for i, node in enumerate(graph.nodes):
        emit = _EMITTERS.get(node.op)
        if emit is None:
            raise IRError(f"op `{node.op}` ({node.output}) has no C code generator; fuse or lower it first.")
        fn = f"op{i:03d}_{node.op}"
        functions.append(fn)
        lines += [
            f"/* {node.to_text()}",
            f" * from {node.source or '-'} */",
            f"static void {fn}(const Ctx *c) {{",
            *[f"    {s}" for s in emit(node, names)],
            "}",
            "",
        ]
    lines += _entry(graph, functions)
    lines += [
        "",
        f"int canao_abi_version(void) {{ return {ABI_VERSION}; }}",
        "int canao_vector_width(void) { return VL; }",
        f"long canao_arena_floats(void) {{ return {int(graph.meta['arena_floats'])}L; }}",
        f"long canao_weight_floats(void) {{ return {weight_floats}L; }}",
        f'const char *canao_graph_hash(void) {{ return "{graph_hash(graph)}"; }}',
        "void canao_set_threads(int n) {",
        "#ifdef _OPENMP",
        "    omp_set_num_threads(n > 0 ? n : 1);",
        "#else",
        "    (void)n;",
        "#endif",
        "}",
        "",
        *_describe_io(graph),
        "",
    ]
    return "\n".join(lines)
