"""Small lowered graphs and inputs for compiler tests (random weights, fixed seeds)."""

from __future__ import annotations

import numpy as np
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.compiler.ir import Graph
from canao.compiler.lower import lower_model
from canao.compiler.reference import run_reference
from canao.models import build_model
from tests.hf_factories import perturb

ENC = ArchSpec("encoder", 61, 24, 20, (LayerSpec(2, 6, 30), LayerSpec(3, 5, 17)))
DEC = ArchSpec("decoder", 61, 24, 20, (LayerSpec(2, 6, 30), LayerSpec(3, 5, 17)))


def torch_model(spec: ArchSpec, task: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return perturb(build_model(spec, task, num_labels=3))


def lowered(spec: ArchSpec = ENC, task: str = "backbone", seed: int = 0) -> Graph:
    return lower_model(torch_model(spec, task, seed))


def encoder_inputs(t: int = 7, vocab: int = 61, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros(t, np.float32)
    mask[-2:] = np.finfo(np.float32).min  # two padded keys
    return {
        "input_ids": rng.integers(0, vocab, t).astype(np.int32),
        "token_type_ids": rng.integers(0, 2, t).astype(np.int32),
        "mask": mask,
    }


def run_decoder_twice(graph: Graph, ids: np.ndarray, split: int) -> np.ndarray:
    """Reference run of a decoder graph: prefill ids[:split], then the rest; logits concatenated."""
    m = int(graph.meta["max_positions"])
    caches = {n: np.zeros(graph.types[n].concrete(0, 0, m), np.float32) for n in graph.inputs if n.startswith("cache_")}
    first = run_reference(graph, {"input_ids": ids[:split], **caches})
    second = run_reference(graph, {"input_ids": ids[split:], **caches}, past=split)
    return np.concatenate([first[graph.outputs[0]], second[graph.outputs[0]]])


def assert_same_outputs(before: Graph, after: Graph, tol: float = 1e-5) -> None:
    """Reference outputs of two graphs agree on an encoder input, or a two-call decoder run."""
    if before.meta["kind"] == "encoder":
        x = encoder_inputs()
        a, b = run_reference(before, x), run_reference(after, x)
        for name in before.outputs:
            assert np.abs(a[name] - b[name]).max() < tol, name
    else:
        ids = np.random.default_rng(2).integers(0, 61, 9).astype(np.int32)
        assert np.abs(run_decoder_twice(before, ids, 5) - run_decoder_twice(after, ids, 5)).max() < tol
