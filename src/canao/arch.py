"""`ArchSpec`: the one description of a transformer's structure, and search spaces.

Every stage of canao (models, compiler, latency model, search, distillation)
speaks ArchSpec. The search space of CANAO (arXiv 2009.06823, Sec. 3) is
heterogeneous: each layer picks its own number of heads and FFN width, so a
spec stores a tuple of per-layer :class:`LayerSpec`. Attention width
(`heads * head_dim`) may differ from `hidden`, as in the paper's search space;
the Q/K/V projections map hidden -> heads*head_dim and the output projection
maps back.

Example::

    spec = ArchSpec.uniform("encoder", vocab_size=30522, max_positions=512,
                            hidden=384, num_layers=6, heads=12, head_dim=32, ffn=1536)
    print(spec.num_params(), spec.flops(seq_len=128))
    ArchSpec.from_json(spec.to_json()) == spec
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from canao.errors import SpecError
from canao.storage import read_user_text

Kind = Literal["encoder", "decoder"]
KINDS: tuple[str, ...] = ("encoder", "decoder")
# "gelu" is the exact erf form used by BERT; "gelu_tanh" is the tanh
# polynomial approximation used by GPT-2 (called gelu_new in transformers).
ACTIVATIONS: tuple[str, ...] = ("gelu", "gelu_tanh")
SPEC_VERSION = 1


# Sane upper bounds: far above any model canao targets (BERT-large: hidden 1024, 24 layers, 512 positions),
# low enough that a typo cannot ask for terabytes of weights or a native size overflow.
LIMITS: dict[str, int] = {
    "vocab_size": 10_000_000,
    "max_positions": 1 << 20,
    "hidden": 65_536,
    "type_vocab_size": 1_024,
    "heads": 1_024,
    "head_dim": 4_096,
    "ffn": 1 << 20,
    "num_layers": 1_024,
    "seq_len": 1 << 20,
}


def _require_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(f"`{name}` must be an integer, but got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise SpecError(f"`{name} >= {minimum}` must hold, but got {name}={value}.")
    if name in LIMITS and value > LIMITS[name]:
        raise SpecError(f"`{name} <= {LIMITS[name]:,}` must hold (canao's sanity limit), but got {name}={value:,}.")


@dataclass(frozen=True)
class LayerSpec:
    """One transformer block: attention heads of `head_dim` each and an FFN of width `ffn`."""

    heads: int
    head_dim: int
    ffn: int

    def __post_init__(self) -> None:
        _require_int("heads", self.heads, 1)
        _require_int("head_dim", self.head_dim, 1)
        _require_int("ffn", self.ffn, 1)
        for name in ("heads", "head_dim", "ffn"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def attn_width(self) -> int:
        """Width of the concatenated heads: the Q/K/V projection's output size."""
        return self.heads * self.head_dim


@dataclass(frozen=True)
class ArchSpec:
    """A complete encoder or decoder structure; validated on construction.

    `type_vocab_size` is BERT's segment-embedding count (0 for decoders),
    `norm_eps` the LayerNorm epsilon (BERT 1e-12, GPT-2 1e-5) and `activation`
    the FFN non-linearity; all three default to the family's usual value.
    """

    kind: Kind
    vocab_size: int
    max_positions: int
    hidden: int
    layers: tuple[LayerSpec, ...]
    # None asks for the family's default, filled in by __post_init__: after construction these are never None.
    type_vocab_size: int = cast(int, None)
    norm_eps: float = cast(float, None)
    activation: str = cast(str, None)
    version: int = field(default=SPEC_VERSION)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"`kind` must be one of {KINDS}, but got kind={self.kind!r}.")
        _require_int("vocab_size", self.vocab_size, 1)
        _require_int("max_positions", self.max_positions, 1)
        _require_int("hidden", self.hidden, 1)
        layers = tuple(self.layers)
        if not layers:
            raise SpecError("`layers` must hold at least one LayerSpec, but got an empty sequence.")
        _require_int("num_layers", len(layers), 1)
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise SpecError(f"`layers[{i}]` must be a LayerSpec, but got {type(layer).__name__}.")
        object.__setattr__(self, "layers", layers)
        self._fill_family_defaults()
        if self.kind == "decoder" and self.type_vocab_size != 0:
            raise SpecError(f"`type_vocab_size` must be 0 for a decoder, but got {self.type_vocab_size}.")
        _require_int("type_vocab_size", self.type_vocab_size, 0)
        if not (isinstance(self.norm_eps, float) and 0.0 < self.norm_eps < 1.0):
            raise SpecError(f"`0 < norm_eps < 1` must hold, but got norm_eps={self.norm_eps!r}.")
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"`activation` must be one of {ACTIVATIONS}, but got {self.activation!r}.")
        if self.version != SPEC_VERSION:
            raise SpecError(f"`version` {self.version} is not supported; this canao reads version {SPEC_VERSION}.")
        for name in ("vocab_size", "max_positions", "hidden", "type_vocab_size"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def _fill_family_defaults(self) -> None:
        encoder = self.kind == "encoder"
        if self.type_vocab_size is None:
            object.__setattr__(self, "type_vocab_size", 2 if encoder else 0)
        if self.norm_eps is None:
            object.__setattr__(self, "norm_eps", 1e-12 if encoder else 1e-5)
        elif isinstance(self.norm_eps, (int, np.floating)) and not isinstance(self.norm_eps, bool):
            object.__setattr__(self, "norm_eps", float(self.norm_eps))
        if self.activation is None:
            object.__setattr__(self, "activation", "gelu" if encoder else "gelu_tanh")

    # ----------------------------------------------------------- construction
    @classmethod
    def uniform(
        cls,
        kind: Kind,
        *,
        vocab_size: int,
        max_positions: int,
        hidden: int,
        num_layers: int,
        heads: int,
        head_dim: int | None = None,
        ffn: int | None = None,
        **extra: Any,
    ) -> "ArchSpec":
        """A homogeneous spec; head_dim defaults to hidden/heads and ffn to 4*hidden."""
        _require_int("num_layers", num_layers, 1)
        if head_dim is None:
            if hidden % heads:
                raise SpecError(f"`hidden % heads == 0` must hold to infer head_dim, but got ({hidden=}, {heads=}).")
            head_dim = hidden // heads
        layer = LayerSpec(heads=heads, head_dim=head_dim, ffn=4 * hidden if ffn is None else ffn)
        return cls(
            kind=kind,
            vocab_size=vocab_size,
            max_positions=max_positions,
            hidden=hidden,
            layers=(layer,) * num_layers,
            **extra,
        )

    def replace(self, **changes: Any) -> "ArchSpec":
        """A copy with some fields changed (validated again)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return ArchSpec(**values)

    # ------------------------------------------------------------- properties
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def is_uniform(self) -> bool:
        """True when every layer is the same and attention width equals hidden (what HF configs can express)."""
        first = self.layers[0]
        return all(layer == first for layer in self.layers) and first.attn_width == self.hidden

    def num_params(self, *, with_pooler: bool | None = None) -> int:
        """Parameter count of the backbone (the LM head of a decoder is tied, so free).

        An encoder includes BERT's pooler (hidden x hidden + bias) unless
        `with_pooler=False`.
        """
        h = self.hidden
        total = (self.vocab_size + self.max_positions + self.type_vocab_size) * h
        total += 2 * h  # embedding LayerNorm (encoder) or final LayerNorm (decoder)
        for layer in self.layers:
            a, f = layer.attn_width, layer.ffn
            total += 3 * (h * a + a) + (a * h + h)  # Q, K, V and output projections
            total += (h * f + f) + (f * h + h)  # FFN up and down
            total += 2 * 2 * h  # two LayerNorms
        if self.kind == "encoder" and with_pooler is not False:
            total += h * h + h
        return total

    def flops(self, seq_len: int, *, with_lm_head: bool = True) -> int:
        """Multiply-add FLOPs (2 per MAC) of one forward pass over `seq_len` tokens, batch 1.

        Counts the GEMMs and the two attention products as executed densely
        (seq x seq, also for the causal decoder); elementwise ops, softmax and
        LayerNorm are O(seq*hidden) and left out. A decoder adds the tied
        LM head (hidden x vocab per token) unless `with_lm_head=False`.
        """
        _require_int("seq_len", seq_len, 1)
        t, h = seq_len, self.hidden
        macs = 0
        for layer in self.layers:
            a, f = layer.attn_width, layer.ffn
            macs += t * h * 3 * a + t * a * h  # Q, K, V, output projection
            macs += 2 * t * t * a  # scores Q K^T and probabilities x V
            macs += 2 * t * h * f  # FFN up and down
        if self.kind == "decoder" and with_lm_head:
            macs += t * h * self.vocab_size
        return 2 * macs

    # ------------------------------------------------------------ (de)serial
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArchSpec":
        if not isinstance(data, dict):
            raise SpecError(f"an ArchSpec must be a JSON object, but got {type(data).__name__}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"ArchSpec has no field(s) {unknown}; known fields are {sorted(known)}.")
        if "layers" not in data:
            raise SpecError("ArchSpec field `layers` is missing.")
        layers = []
        for i, layer in enumerate(data["layers"]):
            if not isinstance(layer, dict) or set(layer) != {"heads", "head_dim", "ffn"}:
                raise SpecError(f"`layers[{i}]` must be an object with heads, head_dim and ffn, but got {layer!r}.")
            layers.append(LayerSpec(**layer))
        try:
            return cls(**{**data, "layers": tuple(layers)})
        except TypeError as err:  # a required field is absent
            raise SpecError(f"ArchSpec is incomplete: {err}.") from err

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise SpecError(f"ArchSpec JSON does not parse: {type(err).__name__}: {err}.") from err
        return cls.from_dict(data)

    def describe(self) -> str:
        """A one-line summary such as `encoder L6 H384 A12x32 F1536 (22.7M params)`."""
        if len({(layer.heads, layer.head_dim, layer.ffn) for layer in self.layers}) == 1:
            lay = self.layers[0]
            body = f"A{lay.heads}x{lay.head_dim} F{lay.ffn}"
        else:
            body = "[" + ", ".join(f"A{x.heads}x{x.head_dim} F{x.ffn}" for x in self.layers) + "]"
        return f"{self.kind} L{self.num_layers} H{self.hidden} {body} ({self.num_params() / 1e6:.1f}M params)"


@dataclass(frozen=True)
class SearchSpace:
    """A heterogeneous search space: each layer picks heads and FFN width independently.

    Its largest member is the supernet (`largest()`); every member is a
    slice of it, so elastic weight sharing (canao.models.elastic) applies.
    """

    kind: Kind
    vocab_size: int
    max_positions: int
    hidden_choices: tuple[int, ...]
    layer_choices: tuple[int, ...]
    heads_choices: tuple[int, ...]
    head_dim: int
    ffn_choices: tuple[int, ...]
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        for name in ("hidden_choices", "layer_choices", "heads_choices", "ffn_choices"):
            values = tuple(sorted(set(int(v) for v in getattr(self, name))))
            if not values or values[0] < 1:
                raise SpecError(
                    f"`{name}` must be a non-empty set of positive integers, but got {getattr(self, name)!r}."
                )
            object.__setattr__(self, name, values)
        self.largest()  # validates the remaining fields through ArchSpec

    def largest(self) -> ArchSpec:
        layer = LayerSpec(max(self.heads_choices), self.head_dim, max(self.ffn_choices))
        return ArchSpec(
            self.kind, self.vocab_size, self.max_positions, max(self.hidden_choices), (layer,) * max(self.layer_choices)
        )

    def contains(self, spec: ArchSpec) -> bool:
        return (
            spec.kind == self.kind
            and spec.vocab_size == self.vocab_size
            and spec.max_positions == self.max_positions
            and spec.hidden in self.hidden_choices
            and spec.num_layers in self.layer_choices
            and all(
                x.heads in self.heads_choices and x.head_dim == self.head_dim and x.ffn in self.ffn_choices
                for x in spec.layers
            )
        )

    def sample(self, rng: np.random.Generator) -> ArchSpec:
        """A uniformly drawn member (each choice independent)."""
        num_layers = int(rng.choice(self.layer_choices))
        layers = tuple(
            LayerSpec(int(rng.choice(self.heads_choices)), self.head_dim, int(rng.choice(self.ffn_choices)))
            for _ in range(num_layers)
        )
        return ArchSpec(self.kind, self.vocab_size, self.max_positions, int(rng.choice(self.hidden_choices)), layers)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise SpecError(f"SearchSpace JSON does not parse: {type(err).__name__}: {err}.") from err
        if not isinstance(data, dict):
            raise SpecError(f"a SearchSpace must be a JSON object, but got {type(data).__name__}.")
        known = set(cls.__dataclass_fields__)
        if set(data) - known or {f for f in known if f != "version"} - set(data):
            raise SpecError(f"SearchSpace needs the fields {sorted(known - {'version'})}; got {sorted(data)}.")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**fields)
        except (TypeError, ValueError) as err:
            if isinstance(err, SpecError):
                raise
            raise SpecError(f"SearchSpace holds a value of the wrong type ({err}).") from err


def read_arch(path: Path) -> ArchSpec:
    """An ArchSpec JSON file, with errors that name the file."""
    text = read_user_text(path, "an ArchSpec JSON file", SpecError)
    try:
        return ArchSpec.from_json(text)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
