"""Lowering: ArchSpec + weights (or a canao PyTorch model) -> unfused graph IR.

The lowered graph states each layer the way the math reads (matmul, bias add,
GELU, residual add, LayerNorm, attention as scores/mask/softmax/context), so
that every fusion is a visible pass. Weights are taken from a canao state
dict (nn.Linear layout: out x in). The attention scale 1/sqrt(head_dim) is
applied to Q, which constant folding later moves into W_q and b_q.

Example::

    graph = lower_model(load_teacher().model)
    print(graph.to_text())
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from canao.arch import ArchSpec
from canao.compiler.ir import Dim, Graph, IRError, Node, TensorType, make_node


class GraphBuilder:
    """Accumulates nodes, types and constants with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.inputs: list[str] = []

    def input(self, name: str, shape: tuple[Dim, ...], dtype: str = "f32") -> str:
        self.types[name] = TensorType(shape, dtype)
        self.inputs.append(name)
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array, dtype=np.float32)
        self.types[name] = TensorType(tuple(int(d) for d in array.shape))
        self.constants[name] = array
        return name

    def op(
        self, op: str, inputs: tuple[str, ...], shape: tuple[Dim, ...], name: str, source: str = "", **attrs: Any
    ) -> str:
        base, i = name, 1
        while name in self.types:
            name, i = f"{base}_{i}", i + 1
        self.types[name] = TensorType(shape)
        self.nodes.append(make_node(op, inputs, name, source, **attrs))
        return name

    def linear(self, x: str, rows: Dim, weights: Mapping[str, np.ndarray], module: str, out_name: str) -> str:
        """matmul by `module`.weight then add `module`.bias."""
        w = self.const(f"{module}.weight", weights[f"{module}.weight"])
        b = self.const(f"{module}.bias", weights[f"{module}.bias"])
        n = self.types[w].shape[0]
        y = self.op("matmul", (x, w), (rows, n), f"{out_name}_mm", module)
        return self.op("add", (y, b), (rows, n), out_name, module)

    def layer_norm(self, x: str, weights: Mapping[str, np.ndarray], module: str, eps: float, out_name: str) -> str:
        g = self.const(f"{module}.weight", weights[f"{module}.weight"])
        b = self.const(f"{module}.bias", weights[f"{module}.bias"])
        return self.op("layer_norm", (x, g, b), self.types[x].shape, out_name, module, eps=eps)

    def graph(self, outputs: tuple[str, ...], meta: dict[str, Any]) -> Graph:
        return Graph(tuple(self.inputs), outputs, tuple(self.nodes), dict(self.types), dict(self.constants), meta)


def _attention(
    g: GraphBuilder,
    x: str,
    i: int,
    spec: ArchSpec,
    w: Mapping[str, np.ndarray],
    caches: tuple[str, str] | None,
    mask: str | None,
) -> str:
    """Q/K/V projections, scores, mask, softmax and context for layer i; returns the context [T, A]."""
    layer, p = spec.layers[i], f"layers.{i}.attn"
    a = layer.attn_width
    q = g.linear(x, "T", w, f"{p}.q", f"l{i}_q_raw")
    q = g.op("scale", (q,), ("T", a), f"l{i}_q", f"{p}.q", factor=1.0 / math.sqrt(layer.head_dim))
    k = g.linear(x, "T", w, f"{p}.k", f"l{i}_k")
    v = g.linear(x, "T", w, f"{p}.v", f"l{i}_v")
    if caches is not None:  # decoder: keys/values of this call join the cache
        k = g.op("kv_append", (caches[0], k), ("S", a), f"l{i}_k_all", f"{p}.k", start=0, width=a)
        v = g.op("kv_append", (caches[1], v), ("S", a), f"l{i}_v_all", f"{p}.v", start=0, width=a)
    heads = dict(heads=layer.heads, head_dim=layer.head_dim)
    s = g.op("attn_scores", (q, k), (layer.heads, "T", "S"), f"l{i}_scores", p, **heads)
    s = g.op(
        "attn_mask",
        (s,) if mask is None else (s, mask),
        (layer.heads, "T", "S"),
        f"l{i}_masked",
        p,
        causal=caches is not None,
    )
    s = g.op("softmax", (s,), (layer.heads, "T", "S"), f"l{i}_probs", p)
    return g.op("attn_context", (s, v), ("T", a), f"l{i}_ctx", p, **heads)


def _ffn(g: GraphBuilder, x: str, i: int, spec: ArchSpec, w: Mapping[str, np.ndarray]) -> str:
    """down(gelu(up(x))) of layer i."""
    u = g.linear(x, "T", w, f"layers.{i}.ffn.up", f"l{i}_up")
    u = g.op("gelu", (u,), g.types[u].shape, f"l{i}_act", f"layers.{i}.ffn", form=spec.activation)
    return g.linear(u, "T", w, f"layers.{i}.ffn.down", f"l{i}_down")


def _encoder_embed(g: GraphBuilder, spec: ArchSpec, w: Mapping[str, np.ndarray]) -> str:
    h = spec.hidden
    ids, types = g.input("input_ids", ("T",), "i32"), g.input("token_type_ids", ("T",), "i32")
    tok = g.op(
        "gather", (g.const("embed.token.weight", w["embed.token.weight"]), ids), ("T", h), "emb_tok", "embed.token"
    )
    pos = g.op(
        "pos_embed",
        (g.const("embed.position.weight", w["embed.position.weight"]),),
        ("T", h),
        "emb_pos",
        "embed.position",
    )
    typ = g.op(
        "gather",
        (g.const("embed.token_type.weight", w["embed.token_type.weight"]), types),
        ("T", h),
        "emb_type",
        "embed.token_type",
    )
    x = g.op("add", (tok, pos), ("T", h), "emb_sum", "embed")
    x = g.op("add", (x, typ), ("T", h), "emb_sum3", "embed")
    return g.layer_norm(x, w, "embed.norm", spec.norm_eps, "emb")


def _encoder_layer(g: GraphBuilder, x: str, i: int, spec: ArchSpec, w: Mapping[str, np.ndarray], mask: str) -> str:
    """Post-LN block i: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""
    h = spec.hidden
    ctx = _attention(g, x, i, spec, w, None, mask)
    o = g.linear(ctx, "T", w, f"layers.{i}.attn.out", f"l{i}_attn_out")
    r = g.op("add", (o, x), ("T", h), f"l{i}_attn_res", f"layers.{i}")
    x = g.layer_norm(r, w, f"layers.{i}.attn_norm", spec.norm_eps, f"l{i}_attn_norm")
    r = g.op("add", (_ffn(g, x, i, spec, w), x), ("T", h), f"l{i}_ffn_res", f"layers.{i}")
    return g.layer_norm(r, w, f"layers.{i}.ffn_norm", spec.norm_eps, f"l{i}_out")


def _encoder_head(g: GraphBuilder, x: str, spec: ArchSpec, w: Mapping[str, np.ndarray], task: str) -> tuple[str, ...]:
    h = spec.hidden
    if task == "qa":
        return (g.linear(x, "T", w, "qa", "qa_logits"),)
    cls = g.op("row", (x,), (1, h), "cls", "pooler", index=0)
    pooled = g.op("tanh", (g.linear(cls, 1, w, "pooler", "pooler_pre"),), (1, h), "pooled", "pooler")
    if task == "classification":
        return (g.linear(pooled, 1, w, "classifier", "logits"),)
    return x, pooled


def _decoder_embed(g: GraphBuilder, spec: ArchSpec, w: Mapping[str, np.ndarray]) -> str:
    h = spec.hidden
    ids = g.input("input_ids", ("T",), "i32")
    tok = g.op(
        "gather", (g.const("embed.token.weight", w["embed.token.weight"]), ids), ("T", h), "emb_tok", "embed.token"
    )
    pos = g.op(
        "pos_embed",
        (g.const("embed.position.weight", w["embed.position.weight"]),),
        ("T", h),
        "emb_pos",
        "embed.position",
    )
    return g.op("add", (tok, pos), ("T", h), "emb", "embed")


def _decoder_layer(
    g: GraphBuilder, x: str, i: int, spec: ArchSpec, w: Mapping[str, np.ndarray], caches: tuple[str, str]
) -> str:
    """Pre-LN block i: x = x + Attn(LN(x)) (causal, KV cache); x = x + FFN(LN(x))."""
    h = spec.hidden
    n = g.layer_norm(x, w, f"layers.{i}.attn_norm", spec.norm_eps, f"l{i}_ln1")
    ctx = _attention(g, n, i, spec, w, caches, None)
    o = g.linear(ctx, "T", w, f"layers.{i}.attn.out", f"l{i}_attn_out")
    x = g.op("add", (o, x), ("T", h), f"l{i}_attn_res", f"layers.{i}")
    n = g.layer_norm(x, w, f"layers.{i}.ffn_norm", spec.norm_eps, f"l{i}_ln2")
    return g.op("add", (_ffn(g, n, i, spec, w), x), ("T", h), f"l{i}_out", f"layers.{i}")


def _decoder_head(g: GraphBuilder, x: str, spec: ArchSpec, w: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    x = g.layer_norm(x, w, "final_norm", spec.norm_eps, "final")
    wte = g.const("embed.token.weight", w["embed.token.weight"])
    return (g.op("matmul", (x, wte), ("T", spec.vocab_size), "logits", "lm_head"),)


def _caches(g: GraphBuilder, spec: ArchSpec, i: int) -> tuple[str, str]:
    width = spec.layers[i].attn_width
    return g.input(f"cache_k{i}", ("M", width)), g.input(f"cache_v{i}", ("M", width))


def _lower_encoder(g: GraphBuilder, spec: ArchSpec, w: Mapping[str, np.ndarray], task: str) -> tuple[str, ...]:
    x = _encoder_embed(g, spec, w)
    mask = g.input("mask", ("S",))
    for i in range(spec.num_layers):
        x = _encoder_layer(g, x, i, spec, w, mask)
    return _encoder_head(g, x, spec, w, task)


def _lower_decoder(g: GraphBuilder, spec: ArchSpec, w: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    x = _decoder_embed(g, spec, w)
    caches = [_caches(g, spec, i) for i in range(spec.num_layers)]
    for i in range(spec.num_layers):
        x = _decoder_layer(g, x, i, spec, w, caches[i])
    return _decoder_head(g, x, spec, w)


def _strip_task_prefix(weights: Mapping[str, np.ndarray], task: str) -> dict[str, np.ndarray]:
    prefix = "encoder." if task in ("classification", "qa") else ""
    return {
        k[len(prefix) :] if k.startswith(prefix) else k: np.asarray(v, dtype=np.float32) for k, v in weights.items()
    }


BLOCKS = ("embed", "layer", "head")


def lower_block(
    spec: ArchSpec, weights: Mapping[str, np.ndarray], block: str, *, layer: int = 0, task: str = "backbone"
) -> Graph:
    """One building block of a model as its own graph, for latency profiling.

    "embed": ids -> embeddings; "layer": hidden states (input `hidden_in`) ->
    layer `layer`'s output; "head": hidden states -> the task head's outputs.
    The blocks of a model, run in turn, compute the model."""
    if block not in BLOCKS:
        raise IRError(f"`block` must be one of {BLOCKS}, but got {block!r}.")
    w = _strip_task_prefix(weights, task)
    g = GraphBuilder()
    encoder = spec.kind == "encoder"
    try:
        if block == "embed":
            outputs: tuple[str, ...] = (_encoder_embed(g, spec, w) if encoder else _decoder_embed(g, spec, w),)
        else:
            x = g.input("hidden_in", ("T", spec.hidden))
            if block == "head":
                outputs = _encoder_head(g, x, spec, w, task) if encoder else _decoder_head(g, x, spec, w)
            elif encoder:
                outputs = (_encoder_layer(g, x, layer, spec, w, g.input("mask", ("S",))),)
            else:
                outputs = (_decoder_layer(g, x, layer, spec, w, _caches(g, spec, layer)),)
    except KeyError as err:
        raise IRError(f"weights lack {err.args[0]!r}, which the {spec.kind} {block} block needs.") from err
    meta = {
        "spec": spec.to_dict(),
        "task": task,
        "kind": spec.kind,
        "max_positions": spec.max_positions,
        "block": block,
        "layer": layer,
    }
    return g.graph(outputs, meta)


def lower_spec(spec: ArchSpec, weights: Mapping[str, np.ndarray], task: str = "backbone") -> Graph:
    """The unfused IR of a model of `spec` for `task`, with `weights` in canao's state-dict naming."""
    w = _strip_task_prefix(weights, task)
    g = GraphBuilder()
    try:
        outputs = _lower_encoder(g, spec, w, task) if spec.kind == "encoder" else _lower_decoder(g, spec, w)
    except KeyError as err:
        raise IRError(f"weights lack {err.args[0]!r}, which the {spec.kind} spec needs.") from err
    meta = {"spec": spec.to_dict(), "task": task, "kind": spec.kind, "max_positions": spec.max_positions}
    return g.graph(outputs, meta)


def lower_model(model: Any) -> Graph:
    """Lower a canao PyTorch reference model (any task) to IR."""
    from canao.models.heads import backbone_of, task_of

    spec, task = backbone_of(model).spec, task_of(model)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return lower_spec(spec, state, task)
