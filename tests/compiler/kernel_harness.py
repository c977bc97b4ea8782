"""Small C harnesses around canao_kernels.h for kernel-level tests, built for one SIMD level."""

from __future__ import annotations

import ctypes
from typing import Callable

import numpy as np
import pytest

from canao.compiler.codegen.c import KERNELS_H
from canao.compiler.toolchain import build_shared_library
from canao.device import SimdError, host_simd, resolve_simd, simd_level

PRELUDE = f"#define CANAO_DEFAULT_MR {simd_level('scalar').default_mr}\n"
LEVELS = ("amx", "avx512bf16", "avx512", "avx2", "scalar")  # x86-64 levels, widest first

_GEMM = r"""
int run_gemm(const float *A, const void *W, const float *bias, float *C, int M, int N, int K, int mr, int kc,
             const float *gamma, const float *beta) {
    Epilogue e = {{EPI_BIAS, EPI_END}, bias, NULL, 0, 1.0f, gamma, beta, 1e-5f};
    return %s(A, K, W, K, N, C, N, M, &e, mr, kc);
}
"""


def can_run(simd: str) -> bool:
    """Whether this host runs code built for an x86-64 SIMD level (forcing one the CPU lacks is refused)."""
    if host_simd() not in ("avx2", "avx512", "avx512bf16", "amx"):
        return False
    try:
        resolve_simd(simd)
    except SimdError:
        return False
    return True


def kernels_with(source: str, simd: str) -> ctypes.CDLL:
    """The kernels plus `source`, compiled for `simd` (the test is skipped where the CPU cannot run it)."""
    if not can_run(simd):
        pytest.skip(f"this CPU cannot run {simd} code")
    return ctypes.CDLL(str(build_shared_library(PRELUDE + KERNELS_H.read_text() + source, simd=simd)))


def check_gemm_kernel(
    simd: str,
    kernel: str,
    pack: Callable[[np.ndarray, int], np.ndarray],
    expected: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    tol: float,
) -> None:
    """Run `kernel` (a gemm_packed_* with a bias epilogue) for every tile height and K block on shapes with odd
    K, N off the panel width and M off every tile height; compare with expected(a, w, packed) + bias. Then the
    same with the epilogue's row LayerNorm (row bands normalise their own rows; other splits after the product)."""
    lib = kernels_with(_GEMM % kernel, simd)
    rng = np.random.default_rng(0)
    ptr = ctypes.c_void_p
    null = ctypes.c_void_p(None)
    # 32+ rows: AMX tiles; 140 rows: 4 blocks of 32, so 2 threads split them into row bands (+12 rows); K 528
    # and 600 run the bands' K in parts of 128 steps (bf16: 264 and 300 pairs, int8: 132 and 150 quads), one
    # ending exactly at the last whole tile and one past it, each with rest steps for the vector kernel; 70 and
    # 100 rows (2 and 3 blocks + rest rows) take the panel split, 100 x 600 with K in parts in both precisions
    shapes = ((13, 30, 21), (1, 70, 64), (29, 33, 303), (70, 33, 303), (64, 64, 96), (140, 40, 72), (140, 33, 528))
    for m, n, k in (*shapes, (140, 40, 600), (100, 40, 600)):
        a, w = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(n, k)).astype(np.float32)
        a[0] = 1.5  # a constant row
        bias = rng.normal(size=n).astype(np.float32)
        gamma, beta = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
        packed = pack(w, simd_level(simd).panel_width)
        want = expected(a, w, packed) + bias
        limit = tol * (1 + np.abs(want).max())
        centred = want - want.mean(-1, keepdims=True)
        std = np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5)
        want_norm = centred / std * gamma + beta
        limit_norm = 4 * limit / std.min() * np.abs(gamma).max()  # the product's error, over the row's spread
        for mr in (4, 6, 8, 12):
            for kc in (0, 7, 64):
                for norm in (False, True):
                    c = np.full((m, n), np.nan, np.float32)
                    status = lib.run_gemm(
                        ptr(a.ctypes.data),
                        ptr(packed.ctypes.data),
                        ptr(bias.ctypes.data),
                        ptr(c.ctypes.data),
                        m,
                        n,
                        k,
                        mr,
                        kc,
                        ptr(gamma.ctypes.data) if norm else null,
                        ptr(beta.ctypes.data) if norm else null,
                    )
                    assert status == 0
                    if norm:
                        assert np.abs(c - want_norm).max() < limit_norm, (m, n, k, mr, kc, "norm")
                    else:
                        assert np.abs(c - want).max() < limit, (m, n, k, mr, kc)
