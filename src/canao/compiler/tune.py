"""Auto-tuning: pick the fastest GEMM variant per shape by measuring on this device; a shared database.

For every distinct GEMM shape of a compiled graph (M = the sequence length
tuned for, N outputs, K inputs, fp32, bf16 or int8 kernels), the variants (register tile height MR and K
block KC) are timed with a small native benchmark built from the same
kernels the model uses. Results go to a JSON database keyed by the device
fingerprint and SIMD level, then by shape, so a second compile, or another
architecture of the search space with the same shapes, measures nothing
new; a database written on another CPU is never consulted for this one.

Example::

    db = TuningDatabase.load()
    choices, measured = tune_gemms(final_graph, db, seq_len=128, budget_s=60)
    tuned = apply_tuning(final_graph, choices, seq_len=128)
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from canao.compiler.codegen.c import KERNELS_H
from canao.compiler.ir import Graph, Node
from canao.compiler.passes.common import with_attrs
from canao.compiler.passes.pack_weights import packed_precision
from canao.compiler.toolchain import build_shared_library
from canao.latency.device import fingerprint
from canao.storage import write_json_atomically

DB_VERSION = 1
MR_CHOICES = {"avx512bf16": (4, 6, 8, 12), "avx512": (4, 6, 8, 12), "avx2": (4, 6), "neon": (4, 6, 8), "scalar": (4, 6)}
KC_CHOICES = (0, 128, 256)
PRECISION_CODES = {"fp32": 0, "bf16": 1, "int8": 2}  # the bench library's `precision` argument

_BENCH_SOURCE = r"""
#include <time.h>
static double bench_now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

/* Best-of-3 mean time (ms) of `reps` GEMMs of one variant on synthetic data; precision 0 fp32, 1 bf16, 2 int8. */
double canao_bench_gemm(int mr, int kc, int M, int N, int K, int reps, int threads, int precision) {
    int bf16 = precision == 1, int8 = precision == 2;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    int panels = (N + NR - 1) / NR;
    size_t w_floats = bf16 ? (size_t)panels * NR * ((K + 1) / 2)
                      : int8 ? (size_t)panels * NR * ((K + 3) / 4 + 2) : (size_t)panels * NR * K;
    float *A = aligned_alloc(64, ((size_t)M * K * 4 + 63) / 64 * 64);
    float *W = aligned_alloc(64, (w_floats * 4 + 63) / 64 * 64);
    float *C = aligned_alloc(64, ((size_t)M * N * 4 + 63) / 64 * 64);
    float *bias = aligned_alloc(64, ((size_t)N * 4 + 63) / 64 * 64);
    if (!A || !W || !C || !bias) return -1.0;
    for (long i = 0; i < (long)M * K; ++i) A[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < w_floats; ++i) {
        if (bf16) {
            uint32_t pair = 0x3c233c23u + (uint32_t)(i % 7) * 0x00010001u; /* two bf16 near 0.01 */
            memcpy(W + i, &pair, sizeof pair);
        } else if (int8) { /* small quads; scale and sum rows are read as float / int32 bits */
            uint32_t quad = 0x01020304u + (uint32_t)(i % 7);
            memcpy(W + i, &quad, sizeof quad);
        } else {
            W[i] = (float)(i % 7) * 0.01f;
        }
    }
    for (int i = 0; i < N; ++i) bias[i] = 0.5f;
    Epilogue e = {{EPI_BIAS, EPI_END}, bias, NULL, 0, 1.0f};
    double best = 1e30;
    for (int trial = -1; trial < 3; ++trial) { /* trial -1 warms up */
        double t0 = bench_now();
        for (int r = 0; r < (trial < 0 ? 1 : reps); ++r) {
            if (bf16) gemm_packed_bf16(A, K, W, K, N, C, N, M, &e, mr, kc);
            else if (int8) gemm_packed_i8(A, K, W, K, N, C, N, M, &e, mr, kc);
            else gemm_packed(A, K, W, K, N, C, N, M, &e, mr, kc);
        }
        double ms = (bench_now() - t0) * 1e3 / reps;
        if (trial >= 0) best = ms < best ? ms : best;
    }
    free(A); free(W); free(C); free(bias);
    return best;
}

/* Measured peak (G(FL)OP/s, all threads) of the GEMM inner operation in registers, independent chains:
 * precision 0 fp32 FMA, 1 the bf16 pair dot product (2 multiply-adds per lane), 2 the int8 quad dot
 * product (4 multiply-adds per lane). */
double canao_bench_peak_gflops(int threads, int precision) {
    int bf16 = precision == 1, int8 = precision == 2;
    double total = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
#endif
    {
        vf acc[12];
        for (int i = 0; i < 12; ++i) acc[i] = vbroadcast(0.001f * (float)i);
        const vf b = vbroadcast(0.999999f), c = vbroadcast(1e-7f);
        uint32_t bits[VL];
        for (int i = 0; i < VL; ++i) bits[i] = 0x3f7f3f7fu; /* two bf16 0.996 */
        const bf16_b pair = bf16_load_b(bits);
        const uint32_t a_pair = 0x33d633d6u; /* two bf16 ~1e-7 */
        const long iters = 20000000L;
        double t0 = bench_now();
        if (bf16) {
            for (long it = 0; it < iters; ++it) {
                _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) acc[i] = bf16_dot(acc[i], a_pair, pair);
            }
        } else if (int8) {
            vi iacc[12];
            for (int i = 0; i < 12; ++i) iacc[i] = (vi){0} + i;
            const i8_b quads = i8_load_b(bits);
            for (long it = 0; it < iters; ++it) {
                _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) iacc[i] = i8_dot(iacc[i], 0x01010101u, quads);
            }
            for (int i = 0; i < 12; ++i) acc[i] = __builtin_convertvector(iacc[i], vf);
        } else {
            for (long it = 0; it < iters; ++it) {
                _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) acc[i] = acc[i] * b + c;
            }
        }
        double seconds = bench_now() - t0;
        float sink = 0.0f;
        for (int i = 0; i < 12; ++i) sink += acc[i][0];
        total += (double)iters * 12 * VL * (int8 ? 8 : bf16 ? 4 : 2) / seconds / 1e9 + (sink == 12345.0f ? 1e-9 : 0.0);
    }
    return total;
}
"""


def bench_library(simd: str) -> ctypes.CDLL:
    """The native micro-benchmark (same kernels as the models), compiled and cached for `simd`."""
    source = "#define _POSIX_C_SOURCE 200112L\n#include <stdlib.h>\n" + KERNELS_H.read_text() + _BENCH_SOURCE
    lib = ctypes.CDLL(str(build_shared_library(source, simd=simd)))
    lib.canao_bench_gemm.restype = ctypes.c_double
    lib.canao_bench_gemm.argtypes = [ctypes.c_int] * 8
    lib.canao_bench_peak_gflops.restype = ctypes.c_double
    lib.canao_bench_peak_gflops.argtypes = [ctypes.c_int, ctypes.c_int]
    return lib


def tuning_db_path() -> Path:
    return Path(os.environ.get("CANAO_TUNING_DB", Path.home() / ".cache" / "canao" / "tuning-db.json"))


def device_key(simd: str, threads: int) -> str:
    return f"{fingerprint()}@{simd}/t{threads}"


@dataclass
class TuningDatabase:
    """{device key: {shape key: {"mr", "kc", "ms", "gflops", "candidates"}}}, persisted as JSON."""

    path: Path
    entries: dict[str, dict[str, dict]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "TuningDatabase":
        path = path or tuning_db_path()
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return cls(path)  # a corrupt cache is rebuilt, never trusted
        if data.get("version") != DB_VERSION:
            return cls(path)
        return cls(path, data.get("devices", {}))

    def save(self) -> None:
        write_json_atomically(self.path, {"version": DB_VERSION, "devices": self.entries})

    def lookup(self, device: str, shape: str) -> Optional[dict]:
        return self.entries.get(device, {}).get(shape)

    def record(self, device: str, shape: str, result: dict) -> None:
        self.entries.setdefault(device, {})[shape] = result


def gemm_shape(graph: Graph, node: Node, seq_len: int) -> tuple[int, int, int, str]:
    """(M, N, K, precision) of a gemm node with the symbolic rows bound to `seq_len`."""
    rows = graph.types[node.inputs[0]].shape[0]
    m = seq_len if isinstance(rows, str) else int(rows)
    precision = packed_precision(node)
    return m, int(graph.types[node.output].shape[-1]), int(graph.types[node.inputs[0]].shape[-1]), precision


def shape_key(m: int, n: int, k: int, precision: str = "fp32") -> str:
    return f"M{m}_N{n}_K{k}" if precision == "fp32" else f"{precision}_M{m}_N{n}_K{k}"


def _variants(simd: str, k: int) -> list[tuple[int, int]]:
    return [(mr, kc) for mr in MR_CHOICES[simd] for kc in KC_CHOICES if kc == 0 or kc < k]


def measure_shape(lib: ctypes.CDLL, simd: str, m: int, n: int, k: int, threads: int, deadline: float,
                  precision: str = "fp32") -> dict:
    """Time every variant of one shape (stops early at the deadline; the default is always timed)."""
    flops = 2.0 * m * n * k
    reps = max(3, min(200, int(2e8 / max(flops, 1.0))))
    candidates: dict[str, float] = {}
    for mr, kc in _variants(simd, k):
        if candidates and time.monotonic() > deadline:
            break
        candidates[f"mr{mr}_kc{kc}"] = lib.canao_bench_gemm(mr, kc, m, n, k, reps, threads, PRECISION_CODES[precision])
    best = min(candidates, key=candidates.get)
    mr, kc = (int(part[2:]) for part in best.split("_"))
    ms = candidates[best]
    return {"mr": mr, "kc": kc, "ms": ms, "gflops": flops / ms / 1e6, "candidates": candidates}


def tune_gemms(graph: Graph, db: TuningDatabase, *, simd: str, seq_len: int, threads: int, budget_s: float,
               progress: Optional[Callable[[int, int], None]] = None) -> tuple[dict[str, dict], int]:
    """Best variant per GEMM shape of `graph`; returns (choices by shape key, number of shapes measured now)."""
    device = device_key(simd, threads)
    shapes = sorted({gemm_shape(graph, n, seq_len) for n in graph.nodes if n.op == "gemm"})
    deadline = time.monotonic() + budget_s
    choices, measured, lib = {}, 0, None
    for i, (m, n, k, precision) in enumerate(shapes):
        key = shape_key(m, n, k, precision)
        found = db.lookup(device, key)
        if found is None and time.monotonic() < deadline:
            lib = lib or bench_library(simd)
            found = measure_shape(lib, simd, m, n, k, threads, deadline, precision)
            db.record(device, key, found)
            measured += 1
        if found is not None:
            choices[key] = found
        if progress:
            progress(i + 1, len(shapes))
    if measured:
        db.save()
    return choices, measured


def apply_tuning(graph: Graph, choices: dict[str, dict], seq_len: int) -> Graph:
    """Set each gemm's `mr`/`kc` attributes from the tuned choices (untuned shapes keep the defaults)."""
    nodes = []
    for node in graph.nodes:
        if node.op == "gemm":
            choice = choices.get(shape_key(*gemm_shape(graph, node, seq_len)))
            if choice is not None:
                node = with_attrs(node, mr=int(choice["mr"]), kc=int(choice["kc"]))
        nodes.append(node)
    return graph.with_nodes(nodes, tuned_seq_len=seq_len)
