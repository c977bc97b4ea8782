"""Weight layouts the GEMM kernels read: the panel layout and its inverse.

A weight W[N, K] (out x in) packed in "panel<NR>" layout is an array
[ceil(N/NR), K, NR]: panel j holds output columns j*NR .. j*NR+NR-1, stored
k-major so the micro-kernel loads NR consecutive floats per k (one or two
SIMD registers) with unit stride. Rows past N are zero padding.

Example::

    packed = pack_panels(w, nr=16)
    assert (unpack_panels(packed, n=w.shape[0]) == w).all()
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

