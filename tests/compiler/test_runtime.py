"""Compiled models equal PyTorch: the MiniLM teacher, task heads, random architectures, KV-cache decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canao.arch import ArchSpec, LayerSpec
from canao.compiler.build import BuildOptions, build
from canao.compiler.lower import lower_model
from canao.device import simd_level
from canao.models import load_teacher
from tests.compiler.graphs import DEC, ENC, torch_model
from tests.compiler.kernel_harness import can_run

TOL = 1e-4


def _torch_encoder_outputs(model, ids, mask, types):
    with torch.no_grad():
        out = model(torch.tensor(ids).long(), torch.tensor(mask).long(), torch.tensor(types).long())
    return out


def test_minilm_teacher_matches_pytorch():
    teacher = load_teacher()
    compiled = build(lower_model(teacher.model)).load()
    texts = ["How fast can BERT run on a phone?", "Compilers fuse layers."]
    enc = [teacher.tokenizer.encode(t).ids for t in texts]
    width = max(map(len, enc))
    ids = np.array([e + [0] * (width - len(e)) for e in enc])
    mask = np.array([[1] * len(e) + [0] * (width - len(e)) for e in enc])
    got = compiled.run(ids, mask)
    want = _torch_encoder_outputs(teacher.model, ids, mask, np.zeros_like(ids))
    keep = mask.astype(bool)
    assert np.abs(got["last_hidden_state"][keep] - want.last_hidden_state.numpy()[keep]).max() < TOL
    assert np.abs(got["pooled"] - want.pooled.numpy()).max() < TOL


@pytest.mark.parametrize("task", ["classification", "qa"])
def test_task_heads_match(task):
    model = torch_model(ENC, task)
    compiled = build(lower_model(model)).load()
    ids = np.random.default_rng(0).integers(0, 61, (2, 9))
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    mask = np.ones_like(ids)
    with torch.no_grad():
        want = model(torch.tensor(ids), torch.tensor(mask), torch.tensor(types))
    got = compiled.run(ids, mask, types)
    if task == "classification":
        assert got["logits"].shape == (2, 3) and np.abs(got["logits"] - want.numpy()).max() < TOL
    else:
        assert np.abs(got["start_logits"] - want[0].numpy()).max() < TOL
        assert np.abs(got["end_logits"] - want[1].numpy()).max() < TOL


def _decode_matches_recompute(model, compiled, ids: np.ndarray, split: int) -> float:
    session = compiled.new_session()
    steps = [session.prefill(ids[:split])]
    steps += [session.decode_step(t) for t in ids[split:]]
    with torch.no_grad():
        full = model(torch.tensor(ids[None]).long()).logits[0].numpy()
    return float(np.abs(np.concatenate(steps) - full).max())


def test_decoder_kv_cache_equals_full_recompute():
    model = torch_model(DEC, "lm")
    compiled = build(lower_model(model)).load()
    ids = np.random.default_rng(3).integers(0, 61, 15)
    assert _decode_matches_recompute(model, compiled, ids, 6) < TOL
    assert _decode_matches_recompute(model, compiled, ids[:1], 1) < TOL  # a one-token prompt


layers = st.builds(LayerSpec, st.integers(1, 4), st.integers(1, 19), st.integers(1, 45))


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["encoder", "decoder"]),
    hidden=st.integers(1, 41),
    layer_list=st.lists(layers, min_size=1, max_size=3),
    seq=st.integers(1, 20),
    seed=st.integers(0, 99),
)
def test_random_architectures_match_pytorch(kind, hidden, layer_list, seq, seed):
    spec = ArchSpec(kind, 37, 20, hidden, tuple(layer_list))
    model = torch_model(spec, "lm" if kind == "decoder" else "backbone", seed)
    compiled = build(lower_model(model)).load()
    ids = np.random.default_rng(seed).integers(0, 37, seq)
    if kind == "decoder":
        assert _decode_matches_recompute(model, compiled, ids, max(1, seq // 2)) < TOL
        return
    with torch.no_grad():
        want = model(torch.tensor(ids[None]).long())
    got = compiled.run(ids)
    assert np.abs(got["last_hidden_state"] - want.last_hidden_state.numpy()).max() < TOL
    assert np.abs(got["pooled"] - want.pooled.numpy()).max() < TOL


@pytest.mark.parametrize("simd", ["avx2", "scalar", "avx512", "avx512bf16"])
def test_forced_simd_levels(simd):
    if not can_run(simd):
        pytest.skip(f"this CPU cannot run {simd} code")
    model = torch_model(ENC, "backbone")
    compiled = build(lower_model(model), BuildOptions(simd=simd)).load()
    assert compiled.library.lib.canao_vector_width() == simd_level(simd).lanes
    ids = np.random.default_rng(5).integers(0, 61, 11)
    with torch.no_grad():
        want = model(torch.tensor(ids[None]).long()).last_hidden_state.numpy()
    assert np.abs(compiled.run(ids)["last_hidden_state"] - want).max() < TOL


def test_threads_do_not_change_results():
    compiled = build(lower_model(torch_model(ENC, "backbone"))).load()
    ids = np.arange(20) % 61
    compiled.set_threads(1)
    one = compiled.run(ids)["last_hidden_state"]
    compiled.set_threads(2)
    assert np.abs(compiled.run(ids)["last_hidden_state"] - one).max() < 1e-5
