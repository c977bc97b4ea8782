"""Kernels of canao_kernels.h against float64 NumPy: exp over its whole range, GELU (erf and tanh forms),
tanh, and fused attention (fp32 and bf16, odd head dims, causal with a past, padded keys); every x86-64
SIMD level this CPU runs (the vector-lane code and the scalar tails)."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from canao.compiler.layout import round_to_bf16
from tests.compiler.kernel_harness import LEVELS, kernels_with

_HARNESS = r"""
void run_exp(const float *x, float *y, long n) {
    long i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vexp(vload(x + i)));
    for (; i < n; ++i) { vf v = vexp(vbroadcast(x[i])); y[i] = v[0]; }
}
void run_activation(const float *x, float *y, long n, int kind) { activation(x, y, n, kind, 1.0f); }
int run_attention(const float *qkv, const float *mask, float *out, int T, int S, int past, int heads, int hd,
                  int causal, int bf16) {
    int H = heads * hd; /* q: rows past..past+T-1 of the S rows, k and v: all S rows, merged [S, 3H] */
    return attention(qkv + (size_t)past * 3 * H, 3 * H, qkv + H, 3 * H, qkv + 2 * H, 3 * H, mask, out, H, T, S, past,
                     heads, hd, causal, bf16);
}
int code_of(int which) { int codes[] = {EPI_GELU, EPI_GELU_TANH, EPI_TANH}; return codes[which]; }
"""


def _lib(simd: str) -> ctypes.CDLL:
    lib = kernels_with(_HARNESS, simd)
    lib.run_exp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.run_activation.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
    lib.run_attention.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 7
    return lib


def _apply(fn, x: np.ndarray, *extra) -> np.ndarray:
    y = np.empty_like(x)
    fn(x.ctypes.data, y.ctypes.data, x.size, *extra)
    return y


@pytest.mark.parametrize("simd", LEVELS)
def test_exp_and_activations_match_float64(simd):
    lib = _lib(simd)
    x = np.concatenate([np.linspace(-87.0, 88.0, 100_003), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(_apply(lib.run_exp, x) / want - 1)) < 4e-7
    # masked attention scores are -inf and huge negatives: they must give ~0, never NaN
    edge = _apply(lib.run_exp, np.array([-np.inf, np.finfo(np.float32).min, -1e4, -88.0, 1e4], np.float32))
    assert np.all(edge[:4] >= 0) and np.all(edge[:4] < 1.3e-38) and np.isfinite(edge[4]) and edge[4] > 1e38
    a = np.linspace(-12.0, 12.0, 20_001).astype(np.float32)
    a64 = a.astype(np.float64)
    erf = np.vectorize(math.erf)
    gelu = 0.5 * a64 * (1 + erf(a64 / math.sqrt(2)))
    gelu_tanh = 0.5 * a64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (a64 + 0.044715 * a64**3)))
    for which, want in ((0, gelu), (1, gelu_tanh), (2, np.tanh(a64))):
        got = _apply(lib.run_activation, a, lib.code_of(which))
        assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) < 1e-6, which


def _attention_reference(qkv, mask, t, past, heads, hd, causal, bf16):
    s_len, width = qkv.shape[0], heads * hd
    q, k, v = (
        qkv[:, i * width : (i + 1) * width].reshape(s_len, heads, hd).transpose(1, 0, 2).astype(np.float64)
        for i in range(3)
    )
    q = q[:, past : past + t]
    if bf16:
        q, k, v = (round_to_bf16(x.astype(np.float32)).astype(np.float64) for x in (q, k, v))
    scores = q @ k.transpose(0, 2, 1) + mask
    if causal:
        scores += np.where(np.arange(s_len)[None] > past + np.arange(t)[:, None], -np.inf, 0.0)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    if bf16:
        return ((round_to_bf16(e.astype(np.float32)) @ v) / e.sum(-1, keepdims=True)).transpose(1, 0, 2).reshape(t, -1)
    return ((e @ v) / e.sum(-1, keepdims=True)).transpose(1, 0, 2).reshape(t, -1)


@pytest.mark.parametrize("simd", LEVELS)
@pytest.mark.parametrize("bf16", [0, 1])
def test_attention_matches_float64(simd, bf16):
    lib = _lib(simd)
    rng = np.random.default_rng(bf16)
    # (T, S, past, heads, head dim, causal): full and partial row blocks and key vectors, odd head dims
    for t, s_len, past, heads, hd, causal in (
        (37, 37, 0, 3, 32, 0),
        (9, 70, 0, 2, 17, 0),
        (128, 128, 0, 2, 64, 0),
        (5, 45, 40, 3, 8, 1),
        (1, 33, 32, 2, 64, 1),
        (21, 21, 0, 4, 5, 1),
        (20, 50, 30, 2, 40, 1),  # AMX: a 16-row block and a rest, causal past a cache, d pairs over 16, hdv 48
        (33, 97, 0, 1, 24, 0),
        (48, 200, 0, 2, 32, 0),  # AMX: key pairs in two halves (48 + 48) and a rest of 16
    ):
        qkv = (rng.normal(size=(s_len, 3 * heads * hd)) * 0.5).astype(np.float32)
        mask = np.zeros(s_len, np.float32)
        if not causal:
            mask[-3:] = np.finfo(np.float32).min  # padded keys
            mask[s_len // 2] = -1.5  # an additive bias mid-row: the zero-mask fast path of AMX must stop there
        out = np.full((t, heads * hd), np.nan, np.float32)
        assert (
            lib.run_attention(
                qkv.ctypes.data, mask.ctypes.data, out.ctypes.data, t, s_len, past, heads, hd, causal, bf16
            )
            == 0
        )
        want = _attention_reference(qkv, mask, t, past, heads, hd, causal, bf16)
        # bf16: the kernel's exp and numpy's may round a probability to neighbouring bf16 values (2^-8 apart)
        tol = 4e-3 * np.abs(qkv).max() if bf16 else 2e-6
        assert np.abs(out - want).max() < tol, (t, s_len, past, heads, hd, causal)
