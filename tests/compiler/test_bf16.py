"""bf16 GEMMs: the native kernels (AVX-512 BF16) and the widened ones (every other SIMD level) compute the
reference's bf16-operand products; whole models stay within bf16 accuracy of PyTorch fp32; artifacts keep
the precision through rebuilds; tuning keeps bf16 shapes apart from fp32 ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canao.compiler.artifact import load_artifact, write_artifact
from canao.compiler.build import BuildOptions, build
from canao.compiler.codegen.c import generate_c, weight_blob
from canao.compiler.layout import pack_panels_bf16, round_to_bf16
from canao.compiler.lower import lower_model
from canao.compiler.passes.pipeline import run_pipeline
from canao.compiler.reference import run_reference
from canao.compiler.runtime import CompiledModel, NativeLibrary
from canao.compiler.toolchain import build_shared_library
from canao.compiler.tune import TuningDatabase, apply_tuning, gemm_shape, shape_key, tune_gemms
from canao.device import host_simd, simd_level
from canao.errors import CanaoError
from canao.models import load_teacher
from tests.compiler.graphs import DEC, ENC, encoder_inputs, run_decoder_twice, torch_model
from tests.compiler.kernel_harness import LEVELS, can_run, check_gemm_kernel

# Whole models, compiled vs reference on bf16 operands: an fp32 last-bit difference upstream (exp, LayerNorm)
# can round an activation to the other bf16 neighbour (a 2^-8 relative step), which then propagates.
TOL = 5e-3


@pytest.mark.parametrize("simd", LEVELS)
def test_kernel_is_exact_on_rounded_operands(simd):
    """One bf16 GEMM = the float64 product of the bf16-rounded operands, to fp32 accumulation error."""
    check_gemm_kernel(
        simd,
        "gemm_packed_bf16",
        pack_panels_bf16,
        lambda a, w, _: round_to_bf16(a).astype(np.float64) @ round_to_bf16(w).astype(np.float64).T,
        tol=1e-6,
    )


def _runnable_levels() -> list[str]:
    return [s for s in LEVELS if can_run(s)] or [host_simd()]


@pytest.mark.parametrize("simd", LEVELS)
def test_encoder_matches_reference_on_every_simd_level(simd):
    if not can_run(simd):
        pytest.skip(f"this CPU cannot run {simd} code")
    compiled = build(lower_model(torch_model(ENC, "qa")), BuildOptions(simd=simd, precision="bf16")).load()
    assert compiled.graph.meta["matmul_precision"] == "bf16"
    assert all(n.attr("packed").startswith("bf16") for n in compiled.graph.nodes if n.op == "gemm")
    x = encoder_inputs(9)
    want = run_reference(compiled.graph, x)[compiled.graph.outputs[0]]
    keep = (x["mask"] == 0).astype(np.int64)
    got = compiled.run(x["input_ids"], keep, x["token_type_ids"])
    assert np.abs(np.stack([got["start_logits"][0], got["end_logits"][0]], -1) - want).max() < TOL


def test_decoder_kv_cache_matches_reference():
    model = torch_model(DEC, "lm")
    compiled = build(lower_model(model), BuildOptions(precision="bf16")).load()
    ids = np.random.default_rng(2).integers(0, DEC.vocab_size, 9).astype(np.int32)
    want = run_decoder_twice(compiled.graph, ids, 6)
    session = compiled.new_session()
    got = np.concatenate([session.prefill(ids[:6]), session.decode_step(ids[6]), session.decode_step(ids[7:])])
    assert np.abs(got - want).max() < TOL


def test_every_variant_matches_reference():
    """Each (MR, KC) bf16 variant, forced on every GEMM (KC 7 and 8 split K into partial pair blocks)."""
    simd = host_simd()
    graph = run_pipeline(lower_model(torch_model(ENC, "backbone")), nr=simd_level(simd).panel_width, precision="bf16")
    x = encoder_inputs(13)
    want = run_reference(graph, x)[graph.outputs[0]]  # the last hidden states
    for mr in (4, 6, 8, 12):
        for kc in (0, 7, 8):
            choices = {
                shape_key(*gemm_shape(graph, n, 13)): {"mr": mr, "kc": kc} for n in graph.nodes if n.op == "gemm"
            }
            tuned = apply_tuning(graph, choices, 13)
            lib = NativeLibrary.load(build_shared_library(generate_c(tuned), simd=simd))
            got = CompiledModel(tuned, weight_blob(tuned), lib, simd=simd).run(
                x["input_ids"], (x["mask"] == 0).astype(int), x["token_type_ids"]
            )["last_hidden_state"][0]
            assert np.abs(got - want).max() < TOL, (mr, kc)


def test_minilm_stays_within_bf16_accuracy_of_pytorch_fp32():
    teacher = load_teacher()
    ids = np.array([teacher.tokenizer.encode("How fast can BERT run on a phone when it is compiled?").ids])
    with torch.no_grad():
        want = teacher.model(torch.tensor(ids)).last_hidden_state.numpy()[0]
    fp32 = build(lower_model(teacher.model)).load().run(ids)["last_hidden_state"][0]
    bf16 = build(lower_model(teacher.model), BuildOptions(precision="bf16")).load().run(ids)["last_hidden_state"][0]
    err_fp32, err_bf16 = np.abs(fp32 - want).max(), np.abs(bf16 - want).max()
    assert err_fp32 < 1e-4 and 1e-4 < err_bf16 < 0.1  # bf16 really rounds, and only by bf16's 3 digits
    cosine = (bf16 * want).sum(-1) / np.linalg.norm(bf16, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cosine.min() > 0.9999


def test_artifact_keeps_bf16_through_a_rebuild(tmp_path):
    model = torch_model(ENC, "backbone")
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    path = write_artifact(tmp_path / "art", ENC, weights, task="backbone", options=BuildOptions(precision="bf16"))
    assert json.loads((path / "task.json").read_text())["precision"] == "bf16"
    build = next((path / "compiled").iterdir())
    assert json.loads((build / "tuning.json").read_text())["precision"] == "bf16"
    first = load_artifact(path).model
    levels = _runnable_levels()
    other = load_artifact(path, simd=levels[-1]).model  # a forced level is built now, from model.safetensors
    assert other.graph.meta["matmul_precision"] == first.graph.meta["matmul_precision"] == "bf16"
    ids = np.arange(10) % ENC.vocab_size
    assert np.abs(first.run(ids)["last_hidden_state"] - other.run(ids)["last_hidden_state"]).max() < TOL
    with pytest.raises(CanaoError, match="precision"):
        write_artifact(tmp_path / "bad", ENC, weights, task="backbone", options=BuildOptions(precision="fp8"))


def test_tuning_keeps_bf16_shapes_apart(tmp_path):
    simd = host_simd()
    lowered = lower_model(torch_model(ENC, "backbone"))
    db = TuningDatabase.load(tmp_path / "db.json")
    fp32 = run_pipeline(lowered, nr=simd_level(simd).panel_width)
    bf16 = run_pipeline(lowered, nr=simd_level(simd).panel_width, precision="bf16")
    choices32, measured32 = tune_gemms(fp32, db, simd=simd, seq_len=16, threads=2, budget_s=30)
    choices16, measured16 = tune_gemms(bf16, db, simd=simd, seq_len=16, threads=2, budget_s=30)
    assert measured32 == measured16 == len(choices16) >= 3  # the bf16 shapes were not taken from fp32 entries
    assert all(key.startswith("bf16_M") for key in choices16) and not any(k.startswith("bf16") for k in choices32)
