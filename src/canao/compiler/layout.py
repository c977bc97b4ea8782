"""Weight layouts the GEMM kernels read: fp32 panels, bf16 pair panels, and their inverses.

A weight W[N, K] (out x in) packed in "panel<NR>" layout is an array
[ceil(N/NR), K, NR]: panel j holds output columns j*NR .. j*NR+NR-1, stored
k-major so the micro-kernel loads NR consecutive floats per k (one or two
SIMD registers) with unit stride. Rows past N are zero padding.

"bf16panel<NR>" halves the bytes: [ceil(N/NR), ceil(K/2), NR] 32-bit words,
word (j, kk, n) holding bf16(W[n, 2kk]) in its low and bf16(W[n, 2kk+1]) in
its high half (a zero pads an odd K). That is the operand order of the
AVX-512 BF16 dot-product instruction (vdpbf16ps: each fp32 lane adds the
products of one bf16 pair), and a shift or a mask turns each half back into
an fp32 on CPUs without it. The words travel in the float32 weight blob as
raw bits (numpy copies keep the bits; nothing does arithmetic on them).
Rounding to bf16 is round-to-nearest-even, as the hardware conversion does.

Example::

    packed = pack_panels(w, nr=16)
    assert (unpack_panels(packed, n=w.shape[0]) == w).all()
    assert (unpack_panels_bf16(pack_panels_bf16(w, 32), n, k) == round_to_bf16(w)).all()
"""

from __future__ import annotations

import numpy as np


def pack_panels(w: np.ndarray, nr: int) -> np.ndarray:
    n, k = w.shape
    panels = -(-n // nr)
    padded = np.zeros((panels * nr, k), dtype=np.float32)
    padded[:n] = w
    return np.ascontiguousarray(padded.reshape(panels, nr, k).transpose(0, 2, 1))


def unpack_panels(packed: np.ndarray, n: int) -> np.ndarray:
    panels, k, nr = packed.shape
    return packed.transpose(0, 2, 1).reshape(panels * nr, k)[:n]


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """The bf16 (upper 16 bits of fp32) nearest to each value, ties to even, as uint16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """x rounded to bf16 precision, returned as float32."""
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def pack_panels_bf16(w: np.ndarray, nr: int) -> np.ndarray:
    n, k = w.shape
    panels, pairs = -(-n // nr), -(-k // 2)
    bits = np.zeros((panels * nr, pairs * 2), dtype=np.uint32)
    bits[:n, :k] = bf16_bits(w)
    words = bits[:, 0::2] | (bits[:, 1::2] << 16)  # [panels*nr, pairs]
    packed = words.reshape(panels, nr, pairs).transpose(0, 2, 1)
    return np.ascontiguousarray(packed).view(np.float32)


def unpack_panels_bf16(packed: np.ndarray, n: int, k: int) -> np.ndarray:
    panels, pairs, nr = packed.shape
    words = np.ascontiguousarray(packed).view(np.uint32).transpose(0, 2, 1).reshape(panels * nr, pairs)
    out = np.empty((panels * nr, pairs * 2), dtype=np.uint32)
    out[:, 0::2], out[:, 1::2] = words << 16, words & 0xFFFF0000
    return out.view(np.float32)[:n, :k]
