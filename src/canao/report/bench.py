"""`canao bench`: latency of a compiled artifact next to PyTorch eager for the same model, same run.

Batch 1, the same thread count for both, warm-up first, median and p90 over
`runs` timed calls (time.perf_counter), timed in alternating rounds. Encoders are timed on a forward pass
of `seq_len` tokens; decoders on one decode step at a context of `seq_len`
tokens (KV cache on both sides).

Example::

    rows = bench_artifact(load_artifact("art"), seq_len=128, runs=20, threads=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from canao.compiler.artifact import Artifact
from canao.latency.timing import TimingStats, measure_interleaved_ms


@dataclass(frozen=True)
class BenchRow:
    runtime: str
    stats: TimingStats
    max_abs_diff: float  # vs PyTorch on the timed input


@dataclass(frozen=True)
class BenchResult:
    seq_len: int  # what was measured: the asked length, capped by the model's max positions
    rows: list[BenchRow]


def torch_model_of(art: Artifact):
    """The PyTorch reference model of an artifact, from its model.safetensors (eval mode), and torch."""
    import torch
    from safetensors.torch import load_file

    from canao.models.heads import build_model

    state = load_file(str(art.path / "model.safetensors"))
    num_labels = state["classifier.weight"].shape[0] if "classifier.weight" in state else 2
    model = build_model(art.model.spec, art.model.task, num_labels=num_labels)
    model.load_state_dict(state)
    return model.eval(), torch


def bench_artifact(art: Artifact, *, seq_len: int = 128, runs: int = 20, threads: int = 2) -> BenchResult:
    model, torch = torch_model_of(art)
    torch.set_num_threads(threads)
    art.model.set_threads(threads)
    spec = art.model.spec
    seq_len = min(seq_len, spec.max_positions - (1 if spec.kind == "decoder" else 0))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, spec.vocab_size, seq_len)
    if spec.kind == "encoder":
        x = torch.tensor(ids[None])

        def eager() -> object:
            with torch.inference_mode():
                return model(x)

        ref: Any = eager()
        ref = (
            ref.last_hidden_state if hasattr(ref, "last_hidden_state") else (ref[0] if isinstance(ref, tuple) else ref)
        )
        out = next(iter(art.model.run(ids).values()))
        diff = float(np.abs(out - ref.numpy()).max())
        stats = measure_interleaved_ms({"eager": eager, "canao": lambda: art.model.run(ids)}, runs=runs)
        return BenchResult(
            seq_len, [BenchRow("pytorch-eager", stats["eager"], 0.0), BenchRow("canao", stats["canao"], diff)]
        )
    session = art.model.new_session()
    session.prefill(ids)
    token = int(rng.integers(0, spec.vocab_size))
    with torch.inference_mode():
        cache = model(torch.tensor(ids[None])).cache
        step = torch.tensor([[token]])
        ref = model(step, cache=cache).logits[0].numpy()

    def eager_step() -> object:
        with torch.inference_mode():
            return model(step, cache=cache)

    def decode() -> np.ndarray:
        session.length = seq_len  # rewind: every timed step decodes at the same context length
        return session.decode_step(token)

    diff = float(np.abs(decode() - ref).max())
    stats = measure_interleaved_ms({"eager": eager_step, "canao": decode}, runs=runs)
    return BenchResult(
        seq_len,
        [BenchRow("pytorch-eager (KV cache)", stats["eager"], 0.0), BenchRow("canao (KV cache)", stats["canao"], diff)],
    )
