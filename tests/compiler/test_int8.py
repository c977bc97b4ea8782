"""int8 GEMMs (dynamic quantization): the packing and run-time row quantization, the native (AVX-512 VNNI)
and widened kernels against exact integer arithmetic, whole models against the reference and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from canao.compiler.build import BuildOptions, build
from canao.compiler.layout import pack_panels_int8, quantize_columns_int8, quantize_rows_u8, unpack_panels_int8
from canao.compiler.lower import lower_model
from canao.compiler.reference import run_reference
from canao.models import load_teacher
from tests.compiler.graphs import DEC, ENC, encoder_inputs, run_decoder_twice, torch_model
from tests.compiler.kernel_harness import LEVELS, can_run, check_gemm_kernel


@given(st.integers(1, 70), st.integers(1, 23), st.sampled_from([8, 16, 32]))
def test_pack_unpack_round_trip(n, k, nr):
    w = np.random.default_rng(n * k).normal(size=(n, k)).astype(np.float32)
    w[0] = 0.0  # an all-zero column keeps a usable scale
    packed = pack_panels_int8(w, nr)
    assert packed.dtype == np.float32 and packed.shape == (-(-n // nr), -(-k // 4) + 2, nr)
    q, scale, sums = unpack_panels_int8(packed, n, k)
    want_q, want_scale = quantize_columns_int8(w)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(scale, want_scale)
    np.testing.assert_array_equal(sums, want_q.astype(np.int32).sum(1))
    assert np.abs(q * scale[:, None] - w).max() <= 0.5001 * scale.max() and scale[0] == 1.0 and not q[0].any()


def test_row_quantization_keeps_zero_exact_and_errors_within_half_a_step():
    a = np.random.default_rng(0).normal(size=(7, 50)).astype(np.float32)
    a[1] = np.abs(a[1])  # all positive: zero point 0
    a[2] = 0.0
    q, scale, zero = quantize_rows_u8(a)
    assert q.min() >= 0 and q.max() <= 255 and zero[1] == 0 and not q[2].any()
    assert np.all(np.abs(scale[:, None] * (q - zero[:, None]) - a) <= 0.5001 * scale[:, None])
    np.testing.assert_array_equal(quantize_rows_u8(np.zeros((1, 3), np.float32))[0], 0)


def _integer_product(a: np.ndarray, w: np.ndarray, packed: np.ndarray) -> np.ndarray:
    q, w_scale, w_sums = unpack_panels_int8(packed, *w.shape)
    qa, a_scale, a_zero = quantize_rows_u8(a)
    dots = qa.astype(np.int64) @ q.astype(np.int64).T - a_zero[:, None] * w_sums[None].astype(np.int64)
    product = dots * (a_scale[:, None].astype(np.float64) * w_scale[None])
    assert np.abs(product - a @ w.T).max() < 0.05 * np.abs(a @ w.T).max()  # and it approximates fp32
    return product


@pytest.mark.parametrize("simd", LEVELS)
def test_kernel_is_exact_integer_arithmetic(simd):
    """One int8 GEMM = the exact integer products of the quantized operands, scaled (to fp32 rounding)."""
    check_gemm_kernel(simd, "gemm_packed_i8", pack_panels_int8, _integer_product, tol=1e-5)


# Whole models: a value within 1e-6 of a quantization boundary in one runtime may round to the
# neighbouring level in the other (a step of 1/255 of its row's range), which then propagates.
@pytest.mark.parametrize("simd", LEVELS)
def test_encoder_and_decoder_match_reference(simd):
    if not can_run(simd):
        pytest.skip(f"this CPU cannot run {simd} code")
    compiled = build(lower_model(torch_model(ENC, "backbone")), BuildOptions(simd=simd, precision="int8")).load()
    assert all(n.attr("packed").startswith("i8panel") for n in compiled.graph.nodes if n.op == "gemm")
    x = encoder_inputs(9)
    want = run_reference(compiled.graph, x)[compiled.graph.outputs[0]]
    got = compiled.run(x["input_ids"], (x["mask"] == 0).astype(int), x["token_type_ids"])["last_hidden_state"][0]
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()
    decoder = build(lower_model(torch_model(DEC, "lm")), BuildOptions(simd=simd, precision="int8")).load()
    ids = np.random.default_rng(2).integers(0, DEC.vocab_size, 9).astype(np.int32)
    want = run_decoder_twice(decoder.graph, ids, 6)
    session = decoder.new_session()
    got = np.concatenate([session.prefill(ids[:6]), session.decode_step(ids[6]), session.decode_step(ids[7:])])
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()


def test_minilm_int8_stays_close_to_pytorch_fp32():
    teacher = load_teacher()
    ids = np.array([teacher.tokenizer.encode("How fast can BERT run on a phone when it is compiled?").ids])
    with torch.no_grad():
        want = teacher.model(torch.tensor(ids)).last_hidden_state.numpy()[0]
    got = build(lower_model(teacher.model), BuildOptions(precision="int8")).load().run(ids)["last_hidden_state"][0]
    cosine = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert 1e-3 < np.abs(got - want).max() < 1.0 and cosine.min() > 0.98
