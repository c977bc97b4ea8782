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

"i8panel<NR>" quantizes each output column symmetrically to int8 (scale
max|W[n]| / 127, round to nearest even): [ceil(N/NR), ceil(K/4) + 2, NR]
32-bit words; word (j, kk, n) packs q[n, 4kk..4kk+3] as bytes (k ascending
from the low byte; zeros pad K), the operand order of AVX-512 VNNI's
vpdpbusd. The panel's last two rows hold each column's scale (float32 bits)
and the sum of its quantized values (int32), which the kernel needs to
remove the activations' zero point: with a row quantized as
a ~ sa * (qa - za), sum_k a W ~ sa * sw * (qa . qw - za * sum_k qw).

Example::

    packed = pack_panels(w, nr=16)
    assert (unpack_panels(packed, n=w.shape[0]) == w).all()
    assert (unpack_panels_bf16(pack_panels_bf16(w, 32), n, k) == round_to_bf16(w)).all()
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np

from canao.errors import SpecError


class Precision(str, Enum):
    """The matrix-product precision of a compiled model; its value is what files and the CLI spell."""

    FP32 = "fp32"  # fp32 weights and activations, fp32 sums
    BF16 = "bf16"  # bf16-rounded weights and activations, fp32 sums
    INT8 = "int8"  # int8 weights per output column, uint8 activations per row at run time, int32 sums

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, value: "str | Precision") -> "Precision":
        """`value` as a Precision, or a clear error naming the choices."""
        try:
            return cls(value)
        except ValueError:
            raise SpecError(f"`precision` must be one of {[p.value for p in cls]}, but got {value!r}.") from None

    @property
    def layout(self) -> "Layout":
        return LAYOUTS[self]


@dataclass(frozen=True)
class Layout:
    """How GEMM weights of one precision are packed, and how generated C and the bench harness name it."""

    prefix: str  # layout name = prefix + NR, e.g. "bf16panel32"
    pack: Callable[[np.ndarray, int], np.ndarray]  # (W [N, K], NR) -> packed float32 array
    gemm_kernel: str  # the kernel header's GEMM entry point for these panels
    c_code: int  # the bench harness's `precision` argument (canao_bench_gemm, canao_bench_peak_gflops)

    def name(self, nr: int) -> str:
        return f"{self.prefix}{nr}"


def parse_layout(name: str) -> tuple[Precision, int]:
    """(precision, NR) of a packed layout name such as "i8panel16" (the inverse of Layout.name)."""
    for precision, layout in LAYOUTS.items():
        width = name[len(layout.prefix) :]
        if name.startswith(layout.prefix) and width.isdigit():
            return precision, int(width)
    raise SpecError(
        f"unknown packed weight layout {name!r}; known: {[lay.prefix + '<NR>' for lay in LAYOUTS.values()]}."
    )


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


def quantize_columns_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-column int8: (q [N, K] int8, scale [N] float32), w ~ q * scale[:, None]."""
    w = np.asarray(w, dtype=np.float32)
    scale = (np.abs(w).max(axis=1) / np.float32(127.0)).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def pack_panels_int8(w: np.ndarray, nr: int) -> np.ndarray:
    n, k = w.shape
    q, scale = quantize_columns_int8(w)
    panels, quads = -(-n // nr), -(-k // 4)
    padded = np.zeros((panels * nr, quads * 4), dtype=np.uint8)
    padded[:n, :k] = q.view(np.uint8)
    words = padded.view("<u4").reshape(panels * nr, quads)  # little-endian: k ascending from the low byte
    body = np.zeros((panels * nr, quads + 2), dtype=np.uint32)
    body[:, :quads] = words
    body[:n, quads] = scale.view(np.uint32)
    body[:n, quads + 1] = q.astype(np.int32).sum(axis=1).astype(np.int32).view(np.uint32)
    return np.ascontiguousarray(body.reshape(panels, nr, quads + 2).transpose(0, 2, 1)).view(np.float32)


def unpack_panels_int8(packed: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q [n, k] int8, scale [n] float32, column sums [n] int32) of an i8panel array."""
    panels, rows, nr = packed.shape
    quads = rows - 2
    body = np.ascontiguousarray(np.ascontiguousarray(packed).view(np.uint32).transpose(0, 2, 1)).reshape(
        panels * nr, rows
    )
    q = np.ascontiguousarray(body[:, :quads]).astype("<u4").view(np.int8).reshape(panels * nr, quads * 4)[:n, :k]
    return q, body[:n, quads].view(np.float32), body[:n, quads + 1].view(np.int32)


def quantize_rows_u8(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric per-row uint8, exactly as the int8 kernels quantize activations at run time.

    Returns (q [M, K] int32 in 0..255, scale [M], zero point [M] int32), a ~ scale * (q - zero_point)."""
    a = np.asarray(a, dtype=np.float32)
    lo = np.minimum(a.min(axis=1), np.float32(0))
    hi = np.maximum(a.max(axis=1), np.float32(0))
    span = (hi - lo).astype(np.float32)
    flat = span < np.float32(1e-30)
    span[flat] = 255.0
    inv = (np.float32(255.0) / span).astype(np.float32)
    scale = (span / np.float32(255.0)).astype(np.float32)
    zero = np.clip(np.rint(-lo * inv), 0, 255).astype(np.float32)
    q = np.clip(np.rint(a * inv[:, None]) + zero[:, None], 0, 255).astype(np.int32)
    return q, scale, zero.astype(np.int32)


LAYOUTS: dict[Precision, Layout] = {
    Precision.FP32: Layout("panel", pack_panels, "gemm_packed", 0),
    Precision.BF16: Layout("bf16panel", pack_panels_bf16, "gemm_packed_bf16", 1),
    Precision.INT8: Layout("i8panel", pack_panels_int8, "gemm_packed_i8", 2),
}
