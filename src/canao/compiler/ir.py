"""The graph IR: typed dataflow of tensor ops, printable, JSON-serialisable, verifiable.

A `Graph` is an ordered tuple of frozen `Node`s, each producing one value.
Values are graph inputs, constants (weights, held as numpy arrays) or node
outputs; every value has a `TensorType`. Shapes may use two symbols bound at
run time: "T", the number of tokens in this call, and "S", the number of
key/value rows attention sees (T for an encoder, past + T for a decoder).
"M" is the maximum position count (KV-cache rows). One compiled model serves
every T <= max positions.

Op meanings (the NumPy executor in reference.py is their executable
definition; every backend is checked against it):

  gather(table[V,H], ids[T]) -> [T,H]           rows of table picked by ids
  pos_embed(table[P,H]) -> [T,H]                rows past..past+T-1 of table
  add(a, b) -> a + b                            b has a's shape, or is a row vector broadcast over rows
  scale(x)[factor] -> x * factor
  gelu(x)[form] -> GELU, erf form "gelu" or tanh polynomial "gelu_tanh"
  tanh(x) -> tanh(x)
  layer_norm(x, g, b)[eps] -> (x - mean) / sqrt(var + eps) * g + b over the last axis
  matmul(x[T,K], w[N,K]) -> x @ w^T             weights stored out x in, like nn.Linear
  slice_cols(x[T,N])[start, width] -> x[:, start:start+width]
  concat_rows(a[N1,K], b[N2,K], ...) -> [N1+N2+...,K]   (constants only; folded away)
  row(x[T,H])[index] -> [1,H]                   row `index` (0 = [CLS]; -1 = last token)
  attn_scores(q[T,A], k[S,A])[heads, head_dim] -> [heads,T,S]   per head q_h k_h^T (scale applied to q before)
  attn_mask(s[heads,T,S], mask[S]?)[causal] -> s + additive padding mask and/or causal mask
  softmax(s) -> softmax over the last axis
  attn_context(p[heads,T,S], v[S,A])[heads, head_dim] -> [T,A]  per head p_h v_h, heads concatenated
  kv_append(cache[M,A], new[T,*])[start, width] -> [S,A]   writes new[:, start:start+width] into cache rows
                                                 past..past+T-1 and returns rows 0..S-1 (the cache is state)
Fused ops, made by passes:
  gemm(x, w, *extra)[epilogue, packed] -> x @ w^T followed by the epilogue steps in order:
      "bias" (+ next extra input), "residual" (+ next extra input, same shape as the output),
      "gelu"/"gelu_tanh", "tanh", "scale:<f>", and last "layer_norm:<eps>" (+ gamma, beta extra inputs:
      each output row normalised); `packed` names the weight layout
      ("", "panel<NR>", "bf16panel<NR>" or "i8panel<NR>"; see layout.LAYOUTS)
  add_layer_norm(x, r, g, b)[eps] -> layer_norm(x + r)
  attention(q, k, v, mask?)[heads, head_dim, causal, q_start, k_start, v_start, precision?] -> [T, heads*head_dim]
      softmax(q k^T + mask) v per head, reading q/k/v at column offsets of their inputs; no [T,S]
      matrix is stored. precision="bf16": q, k, v and the unnormalised exp(s - max) are rounded
      to bf16 for the two products (fp32 sums); the row sums that normalise stay fp32.

Example::

    graph = lower_spec(spec, state_dict)     # canao.compiler.lower
    print(graph.to_text())
    verify(graph)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Union

import numpy as np

from canao.errors import CanaoError

Dim = Union[int, str]
SYMBOLS = ("T", "S", "M")


class IRError(CanaoError, ValueError):
    """A graph breaks an IR invariant (unknown value, shape clash, cycle)."""


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str = "f32"  # "f32" or "i32"

    def __post_init__(self) -> None:
        for d in self.shape:
            if not (isinstance(d, str) and d in SYMBOLS) and not (isinstance(d, int) and d >= 0):
                raise IRError(f"a dimension must be a non-negative int or one of {SYMBOLS}, but got {d!r}.")
        if self.dtype not in ("f32", "i32"):
            raise IRError(f"`dtype` must be 'f32' or 'i32', but got {self.dtype!r}.")

    def concrete(self, T: int, S: int, M: int) -> tuple[int, ...]:
        bind = {"T": T, "S": S, "M": M}
        return tuple(bind[d] if isinstance(d, str) else d for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Node:
    """One op producing `output` from `inputs`; `attrs` is a sorted tuple of (name, value) pairs."""

    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: tuple[tuple[str, Any], ...] = ()
    source: str = ""  # the model module it came from, for comments in generated code

    def attr(self, name: str, default: Any = KeyError) -> Any:
        for key, value in self.attrs:
            if key == name:
                return value
        if default is KeyError:
            raise IRError(f"node {self.output} ({self.op}) has no attribute `{name}`.")
        return default

    def to_text(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs)
        return f"{self.output} = {self.op}({', '.join(self.inputs)}){f' [{attrs}]' if attrs else ''}"


def make_node(op: str, inputs: Iterable[str], output: str, source: str = "", **attrs: Any) -> Node:
    return Node(op, tuple(inputs), output, tuple(sorted(attrs.items())), source)


@dataclass(frozen=True)
class Graph:
    """A whole model: inputs, constants, nodes in execution order, outputs and value types."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    types: Mapping[str, TensorType]
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)  # spec, task, memory plan, ...

    def with_nodes(
        self,
        nodes: Iterable[Node],
        *,
        types: Mapping[str, TensorType] | None = None,
        constants: Mapping[str, np.ndarray] | None = None,
        **meta: Any,
    ) -> "Graph":
        """A copy with new nodes (and optionally types/constants/meta entries), unused entries dropped."""
        nodes = tuple(nodes)
        types = dict(self.types if types is None else types)
        constants = dict(self.constants if constants is None else constants)
        used = set(self.inputs) | set(self.outputs) | {n.output for n in nodes}
        used |= {i for n in nodes for i in n.inputs}
        return replace(
            self,
            nodes=nodes,
            types={k: v for k, v in types.items() if k in used},
            constants={k: v for k, v in constants.items() if k in used},
            meta={**self.meta, **meta},
        )

    def producer(self) -> dict[str, Node]:
        return {n.output: n for n in self.nodes}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def fresh_name(self, base: str) -> str:
        taken, i = set(self.types), 0
        while f"{base}{'' if i == 0 else f'_{i}'}" in taken:
            i += 1
        return f"{base}{'' if i == 0 else f'_{i}'}"

    # ------------------------------------------------------------- printing
    def to_text(self) -> str:
        lines = [f"graph({', '.join(f'{i}: {self.types[i]}' for i in self.inputs)}) {{"]
        for name in self.constants:
            lines.append(f"  const {name}: {self.types[name]}")
        for n in self.nodes:
            lines.append(f"  {n.to_text()}  : {self.types[n.output]}")
        lines.append(f"  return {', '.join(self.outputs)}")
        lines.append("}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """Structure only: constants appear with their type, their values live in the weights file."""
        meta = {k: v for k, v in self.meta.items() if _jsonable(v)}
        return json.dumps(
            {
                "inputs": list(self.inputs),
                "outputs": list(self.outputs),
                "types": {k: {"shape": list(t.shape), "dtype": t.dtype} for k, t in self.types.items()},
                "constants": sorted(self.constants),
                "nodes": [
                    {
                        "op": n.op,
                        "inputs": list(n.inputs),
                        "output": n.output,
                        "attrs": [[k, v] for k, v in n.attrs],
                        "source": n.source,
                    }
                    for n in self.nodes
                ],
                "meta": meta,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, constants: Mapping[str, np.ndarray] | None = None) -> "Graph":
        data = json.loads(text)
        types = {k: TensorType(tuple(t["shape"]), t["dtype"]) for k, t in data["types"].items()}
        nodes = tuple(
            Node(
                n["op"],
                tuple(n["inputs"]),
                n["output"],
                tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in n["attrs"]),
                n["source"],
            )
            for n in data["nodes"]
        )
        return cls(tuple(data["inputs"]), tuple(data["outputs"]), nodes, types, dict(constants or {}), data["meta"])


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def verify(graph: Graph) -> None:
    """Check the invariants every pass must keep: defined-before-use, types, unique outputs."""
    defined = set(graph.inputs) | set(graph.constants)
    for name in defined:
        if name not in graph.types:
            raise IRError(f"value `{name}` has no type.")
    for name, array in graph.constants.items():
        if tuple(array.shape) != graph.types[name].shape:
            raise IRError(f"constant `{name}` has shape {array.shape}, but its type says {graph.types[name]}.")
    for n in graph.nodes:
        for i in n.inputs:
            if i not in defined:
                raise IRError(f"node `{n.output}` ({n.op}) reads `{i}` before it is defined.")
        if n.output in defined:
            raise IRError(f"value `{n.output}` is defined twice.")
        if n.output not in graph.types:
            raise IRError(f"node `{n.output}` ({n.op}) has no output type.")
        defined.add(n.output)
    for name in graph.outputs:
        if name not in defined:
            raise IRError(f"graph output `{name}` is never defined.")


def graph_hash(graph: Graph) -> str:
    """A short id of a graph's structure and meta (not its weights): what a compiled library was built for."""
    return hashlib.sha256(graph.to_json().encode()).hexdigest()[:16]
