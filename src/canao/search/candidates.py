"""What the search chooses: an architecture plus the precision and sequence length it runs at, as decisions.

CANAO searches the structure per layer (arXiv 2009.06823, Sec. 3.1); canao
adds the matrix-product precision (a latency profile exists per precision)
and, where a task allows it, the sequence length. A `CandidateSpace` is the
set of all three; each member is a `Candidate`. Controllers do not see
ArchSpecs: they choose a fixed-length vector of decisions, one small
categorical choice each,

    [hidden, layers, heads_1, ffn_1, ..., heads_Lmax, ffn_Lmax, precision, seq_len]

where the per-layer decisions past the chosen depth are ignored (so every
vector is a valid member, and every member has vectors). `encode` gives the
canonical vector of a candidate (unused layers at choice 0).

File format (JSON): a SearchSpace's fields, plus optional "precisions"
(default ["fp32"]) and "seq_lens" (default [128]); a list of one value fixes
that dimension.

Example::

    space = CandidateSpace(default_encoder_space(), precisions=("fp32", "int8"))
    decisions = space.random_decisions(np.random.default_rng(0))
    candidate = space.decode(decisions)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from canao.arch import LIMITS, ArchSpec, LayerSpec, SearchSpace
from canao.compiler.layout import Precision
from canao.errors import SpecError
from canao.search.space import default_encoder_space
from canao.storage import read_user_json_object


@dataclass(frozen=True)
class Candidate:
    spec: ArchSpec
    precision: Precision = Precision.FP32
    seq_len: int = 128

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "precision": self.precision.value, "seq_len": self.seq_len}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Candidate":
        return cls(ArchSpec.from_dict(dict(data["spec"])), Precision.parse(data["precision"]), int(data["seq_len"]))

    def key(self) -> str:
        """A canonical string of the candidate (equal candidates, equal keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        return f"{self.spec.describe()} {self.precision.value} @{self.seq_len}"


@dataclass(frozen=True)
class CandidateSpace:
    """Architectures of a SearchSpace x precisions x sequence lengths."""

    arch: SearchSpace
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    seq_lens: tuple[int, ...] = ()  # empty: 128 tokens (CANAO's setting), or max positions if fewer

    def __post_init__(self) -> None:
        precisions = tuple(dict.fromkeys(Precision.parse(p) for p in self.precisions))
        seq_lens = tuple(sorted(set(int(t) for t in self.seq_lens))) or (min(128, self.arch.max_positions),)
        if not precisions or not seq_lens:
            raise SpecError("`precisions` and `seq_lens` must each hold at least one value.")
        if seq_lens[0] < 1 or seq_lens[-1] > min(self.arch.max_positions, LIMITS["seq_len"]):
            raise SpecError(
                f"`seq_lens` must lie in 1..{self.arch.max_positions} (the space's max positions), but got {seq_lens}."
            )
        object.__setattr__(self, "precisions", precisions)
        object.__setattr__(self, "seq_lens", seq_lens)

    # ------------------------------------------------------------ decisions
    @property
    def max_layers(self) -> int:
        return max(self.arch.layer_choices)

    def choice_counts(self) -> tuple[int, ...]:
        """How many options each decision has, in vector order."""
        a = self.arch
        per_layer = (len(a.heads_choices), len(a.ffn_choices)) * self.max_layers
        return (len(a.hidden_choices), len(a.layer_choices), *per_layer, len(self.precisions), len(self.seq_lens))

    def decision_names(self) -> tuple[str, ...]:
        layers = [f"{name}_{i + 1}" for i in range(self.max_layers) for name in ("heads", "ffn")]
        return ("hidden", "layers", *layers, "precision", "seq_len")

    def decode(self, decisions: Sequence[int]) -> Candidate:
        counts = self.choice_counts()
        if len(decisions) != len(counts) or any(not 0 <= int(d) < c for d, c in zip(decisions, counts)):
            raise SpecError(f"decisions {list(decisions)} do not fit the choice counts {list(counts)}.")
        a = self.arch
        depth = a.layer_choices[int(decisions[1])]
        layers = tuple(
            LayerSpec(a.heads_choices[int(decisions[2 + 2 * i])], a.head_dim, a.ffn_choices[int(decisions[3 + 2 * i])])
            for i in range(depth)
        )
        spec = ArchSpec(a.kind, a.vocab_size, a.max_positions, a.hidden_choices[int(decisions[0])], layers)
        return Candidate(spec, self.precisions[int(decisions[-2])], self.seq_lens[int(decisions[-1])])

    def encode(self, candidate: Candidate) -> tuple[int, ...]:
        """The canonical decisions of a member (per-layer decisions past its depth are 0)."""
        if not self.contains(candidate):
            raise SpecError(f"{candidate.describe()} is not a member of this search space.")
        a, spec = self.arch, candidate.spec
        layers: list[int] = []
        for i in range(self.max_layers):
            if i < spec.num_layers:
                layers += [a.heads_choices.index(spec.layers[i].heads), a.ffn_choices.index(spec.layers[i].ffn)]
            else:
                layers += [0, 0]
        return (
            a.hidden_choices.index(spec.hidden),
            a.layer_choices.index(spec.num_layers),
            *layers,
            self.precisions.index(candidate.precision),
            self.seq_lens.index(candidate.seq_len),
        )

    def canonical(self, decisions: Sequence[int]) -> tuple[int, ...]:
        return self.encode(self.decode(decisions))

    def random_decisions(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(rng.integers(0, c)) for c in self.choice_counts())

    def contains(self, candidate: Candidate) -> bool:
        return (
            self.arch.contains(candidate.spec)
            and candidate.precision in self.precisions
            and candidate.seq_len in self.seq_lens
        )

    def size(self) -> int:
        """The number of distinct members."""
        a = self.arch
        per_layer = len(a.heads_choices) * len(a.ffn_choices)
        archs = len(a.hidden_choices) * sum(per_layer**depth for depth in a.layer_choices)
        return archs * len(self.precisions) * len(self.seq_lens)

    def smallest(self) -> Candidate:
        a = self.arch
        layer = LayerSpec(min(a.heads_choices), a.head_dim, min(a.ffn_choices))
        spec = ArchSpec(a.kind, a.vocab_size, a.max_positions, min(a.hidden_choices), (layer,) * min(a.layer_choices))
        return Candidate(spec, self.precisions[0], self.seq_lens[0])

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            **json.loads(self.arch.to_json()),
            "precisions": [p.value for p in self.precisions],
            "seq_lens": list(self.seq_lens),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CandidateSpace":
        data = dict(data)
        precisions, seq_lens = data.pop("precisions", ["fp32"]), data.pop("seq_lens", [])
        if not isinstance(precisions, list) or not isinstance(seq_lens, list):
            raise SpecError("`precisions` and `seq_lens` must be JSON lists.")
        return cls(SearchSpace.from_json(json.dumps(data)), tuple(precisions), tuple(seq_lens))


def load_candidate_space(path: Optional[Path]) -> CandidateSpace:
    """A search-space file (errors name the file), or the default encoder space in fp32 at 128 tokens."""
    if path is None:
        return CandidateSpace(default_encoder_space())
    data = read_user_json_object(path, "a search space JSON file", SpecError)
    try:
        return CandidateSpace.from_dict(data)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
