"""The NumPy reference executor: the executable definition of every IR op.

Every backend (generated C on x86-64 and aarch64) and every pass is checked
against this interpreter. It favours clarity over speed and computes in
float64 internally where an op reduces (LayerNorm, softmax), so it is a
stricter yardstick than float32 kernels.

Example::

    outputs = run_reference(graph, {"input_ids": ids, "token_type_ids": types, "mask": mask})
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from canao.compiler.ir import Graph, IRError, Node
from canao.compiler.layout import (
    Precision,
    quantize_rows_u8,
    round_to_bf16,
    unpack_panels,
    unpack_panels_bf16,
    unpack_panels_int8,
)
from canao.compiler.passes.pack_weights import packed_precision

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(x: np.ndarray, form: str) -> np.ndarray:
    if form == "gelu":
        erf = np.frompyfunc(math.erf, 1, 1)
        return 0.5 * x * (1.0 + np.asarray(erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)), dtype=np.float64))
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdims=True)
    return ((x64 - mean) / np.sqrt(var + eps) * g + b).astype(np.float32)


def softmax(s: np.ndarray) -> np.ndarray:
    s64 = s.astype(np.float64)
    e = np.exp(s64 - s64.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _heads(x: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
    """[R, heads*head_dim] -> [heads, R, head_dim]."""
    return x.reshape(x.shape[0], heads, head_dim).transpose(1, 0, 2)


def _causal(t: int, s: int) -> np.ndarray:
    past = s - t
    allowed = np.tril(np.ones((t, s), dtype=bool), k=past)
    return np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)


def _gemm(ctx: "_Context", node: Node, x: np.ndarray, w: np.ndarray, *extras: np.ndarray) -> np.ndarray:
    """x @ W^T and the epilogue; bf16-packed weights also round x to bf16 (the kernel's operands), fp32 sums;
    int8-packed weights quantize x per row to uint8 as the kernel does (exact integer dot products)."""
    layout, n_out = node.attr("packed", ""), int(ctx.graph.types[node.output].shape[-1])
    precision = packed_precision(node)
    if precision == Precision.INT8:
        q, w_scale, w_sums = unpack_panels_int8(w, n_out, x.shape[-1])
        qa, a_scale, a_zero = quantize_rows_u8(x)
        dots = qa.astype(np.int64) @ q.astype(np.int64).T - a_zero[:, None].astype(np.int64) * w_sums[None]
        product = dots * (a_scale[:, None] * w_scale[None]).astype(np.float64)
    elif precision == Precision.BF16:
        product = round_to_bf16(x) @ unpack_panels_bf16(w, n_out, x.shape[-1]).T
    else:
        product = x @ (unpack_panels(w, n_out) if layout else w).T
    return _epilogue(node, product, list(extras))


def _epilogue(node: Node, y: np.ndarray, extras: list[np.ndarray]) -> np.ndarray:
    extras = list(extras)
    for step in node.attr("epilogue"):
        if step in ("bias", "residual"):
            y = y + extras.pop(0)
        elif step in ("gelu", "gelu_tanh"):
            y = gelu(y, step)
        elif step == "tanh":
            y = np.tanh(y)
        elif step.startswith("scale:"):
            y = y * float(step.split(":", 1)[1])
        elif step.startswith("layer_norm:"):
            y = layer_norm(y, extras.pop(0), extras.pop(0), float(step.split(":", 1)[1]))
        else:
            raise IRError(f"unknown epilogue step {step!r} in {node.output}.")
    return y


def _attention(node: Node, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    heads, hd = node.attr("heads"), node.attr("head_dim")
    width = heads * hd
    qs = _heads(q[:, node.attr("q_start") : node.attr("q_start") + width], heads, hd)
    ks = _heads(k[:, node.attr("k_start") : node.attr("k_start") + width], heads, hd)
    vs = _heads(v[:, node.attr("v_start") : node.attr("v_start") + width], heads, hd)
    bf16 = node.attr("precision", "fp32") == "bf16"
    if bf16:
        qs, ks, vs = round_to_bf16(qs), round_to_bf16(ks), round_to_bf16(vs)
    s = qs @ ks.transpose(0, 2, 1)
    if mask is not None:
        s = s + mask
    if node.attr("causal"):
        s = s + _causal(s.shape[1], s.shape[2])
    if bf16:  # the kernel rounds the unnormalised exponentials, then divides by their fp32 sum
        e = np.exp(s - s.max(-1, keepdims=True))
        context = (round_to_bf16(e) @ vs) / e.sum(-1, keepdims=True)
    else:
        context = softmax(s) @ vs
    return context.transpose(1, 0, 2).reshape(q.shape[0], width)


class _Context:
    def __init__(self, graph: Graph, env: dict[str, np.ndarray], past: int) -> None:
        self.graph, self.env, self.past = graph, env, past


def _kv_append(ctx: _Context, node: Node, cache: np.ndarray, new: np.ndarray) -> np.ndarray:
    start, width = node.attr("start"), node.attr("width")
    t = new.shape[0]
    cache[ctx.past : ctx.past + t] = new[:, start : start + width]
    return cache[: ctx.past + t]


OPS: dict[str, Callable[..., np.ndarray]] = {
    "gather": lambda ctx, n, table, ids: table[ids],
    "pos_embed": lambda ctx, n, table: table[ctx.past : ctx.past + ctx.env["__T"]],
    "add": lambda ctx, n, a, b: a + b,
    "scale": lambda ctx, n, x: x * n.attr("factor"),
    "gelu": lambda ctx, n, x: gelu(x, n.attr("form")),
    "tanh": lambda ctx, n, x: np.tanh(x),
    "layer_norm": lambda ctx, n, x, g, b: layer_norm(x, g, b, n.attr("eps")),
    "matmul": lambda ctx, n, x, w: x @ w.T,
    "slice_cols": lambda ctx, n, x: x[:, n.attr("start") : n.attr("start") + n.attr("width")],
    "concat_rows": lambda ctx, n, *parts: np.concatenate(parts, axis=0),
    "row": lambda ctx, n, x: x[n.attr("index")][None],
    "attn_scores": lambda ctx, n, q, k: (
        _heads(q, n.attr("heads"), n.attr("head_dim"))
        @ _heads(k, n.attr("heads"), n.attr("head_dim")).transpose(0, 2, 1)
    ),
    "attn_mask": lambda ctx, n, s, *mask: (
        (s + (mask[0] if mask else 0.0)) + (_causal(s.shape[1], s.shape[2]) if n.attr("causal") else 0.0)
    ),
    "softmax": lambda ctx, n, s: softmax(s),
    "attn_context": lambda ctx, n, p, v: (
        (p @ _heads(v, n.attr("heads"), n.attr("head_dim"))).transpose(1, 0, 2).reshape(p.shape[1], -1)
    ),
    "kv_append": _kv_append,
    "gemm": _gemm,
    "add_layer_norm": lambda ctx, n, x, r, g, b: layer_norm(x + r, g, b, n.attr("eps")),
    "attention": lambda ctx, n, q, k, v, *mask: _attention(n, q, k, v, mask[0] if mask else None),
}


def run_reference(graph: Graph, inputs: Mapping[str, np.ndarray], *, past: int = 0) -> dict[str, np.ndarray]:
    """Execute `graph` on `inputs` (caches are updated in place); returns the graph outputs."""
    missing = [name for name in graph.inputs if name not in inputs]
    if missing:
        raise IRError(f"inputs {missing} are missing; the graph takes {list(graph.inputs)}.")
    env: dict[str, Any] = {**graph.constants, **inputs}  # values, and "__T" the token count
    first = inputs["input_ids"] if "input_ids" in inputs else inputs["hidden_in"]
    env["__T"] = int(np.asarray(first).shape[0])
    ctx = _Context(graph, env, past)
    for node in graph.nodes:
        fn = OPS.get(node.op)
        if fn is None:
            raise IRError(f"op `{node.op}` has no reference definition.")
        env[node.output] = np.asarray(fn(ctx, node, *(env[i] for i in node.inputs)), dtype=np.float32)
    return {name: env[name] for name in graph.outputs}
