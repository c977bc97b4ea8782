"""The elementwise kernels of canao_kernels.h against float64 NumPy: exp over its whole range, GELU (erf and
tanh forms), tanh; every x86-64 SIMD level this CPU runs (the vector-lane code and the scalar tails)."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from canao.compiler.codegen.c import KERNELS_H
from canao.compiler.toolchain import build_shared_library
from tests.compiler.test_runtime import can_run

_HARNESS = r"""
void run_exp(const float *x, float *y, long n) {
    long i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vexp(vload(x + i)));
    for (; i < n; ++i) { vf v = vexp(vbroadcast(x[i])); y[i] = v[0]; }
}
void run_activation(const float *x, float *y, long n, int kind) { activation(x, y, n, kind, 1.0f); }
int code_of(int which) { int codes[] = {EPI_GELU, EPI_GELU_TANH, EPI_TANH}; return codes[which]; }
"""


def _lib(simd: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build_shared_library("#include <stdlib.h>\n" + KERNELS_H.read_text() + _HARNESS, simd=simd)))
    lib.run_exp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.run_activation.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
    return lib


def _apply(fn, x: np.ndarray, *extra) -> np.ndarray:
    y = np.empty_like(x)
    fn(x.ctypes.data, y.ctypes.data, x.size, *extra)
    return y


@pytest.mark.parametrize("simd", ["avx512bf16", "avx512", "avx2", "scalar"])
def test_exp_and_activations_match_float64(simd):
    if not can_run(simd):
        pytest.skip(f"this CPU cannot run {simd} code")
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
    gelu_tanh = 0.5 * a64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (a64 + 0.044715 * a64 ** 3)))
    for which, want in ((0, gelu), (1, gelu_tanh), (2, np.tanh(a64))):
        got = _apply(lib.run_activation, a, lib.code_of(which))
        assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) < 1e-6, which
