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

from canao.compiler.ir import Graph, Node
from canao.compiler.layout import Precision
from canao.compiler.passes.common import with_attrs
from canao.compiler.passes.pack_weights import packed_precision
from canao.compiler.runtime import prefer_passive_waiting
from canao.compiler.toolchain import CODEGEN_DIR, build_shared_library
from canao.device import fingerprint, simd_level
from canao.storage import write_json_atomically

DB_VERSION = 1
KC_CHOICES = (0, 128, 256)
BENCH_SOURCE = CODEGEN_DIR / "bench_gemm.c"  # canao_bench_gemm, canao_bench_peak_gflops


def bench_library(simd: str) -> ctypes.CDLL:
    """The native micro-benchmark (same kernels as the models), compiled and cached for `simd`."""
    prefer_passive_waiting()  # as the models will run: libgomp reads the policy once, when first loaded
    flags = (f"-DCANAO_DEFAULT_MR={simd_level(simd).default_mr}",)
    lib = ctypes.CDLL(str(build_shared_library(None, simd=simd, extra_flags=flags, extra_sources=(BENCH_SOURCE,))))
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


def gemm_shape(graph: Graph, node: Node, seq_len: int) -> tuple[int, int, int, Precision]:
    """(M, N, K, precision) of a gemm node with the symbolic rows bound to `seq_len`."""
    rows = graph.types[node.inputs[0]].shape[0]
    m = seq_len if isinstance(rows, str) else int(rows)
    precision = packed_precision(node)
    return m, int(graph.types[node.output].shape[-1]), int(graph.types[node.inputs[0]].shape[-1]), precision


def shape_key(m: int, n: int, k: int, precision: str | Precision = Precision.FP32) -> str:
    precision = Precision.parse(precision)
    return f"M{m}_N{n}_K{k}" if precision == Precision.FP32 else f"{precision.value}_M{m}_N{n}_K{k}"


AMX_MIN_ROWS = 32  # canao_kernels.h: AMX_MR; bf16 and int8 GEMMs with this many rows run on AMX tiles


def _variants(simd: str, k: int, m: int = 0, precision: str | Precision = Precision.FP32) -> list[tuple[int, int]]:
    """The (MR, KC) variants worth timing. On AMX, bf16 and int8 GEMMs of 32+ rows run one tile kernel whatever
    MR and KC say: only the default is timed (its figure is still recorded for the latency model)."""
    level = simd_level(simd)
    if level.amx_tiles and Precision.parse(precision) != Precision.FP32 and m >= AMX_MIN_ROWS:
        return [(level.default_mr, 0)]
    return [(mr, kc) for mr in level.mr_choices for kc in KC_CHOICES if kc == 0 or kc < k]


def measure_shape(
    lib: ctypes.CDLL,
    simd: str,
    m: int,
    n: int,
    k: int,
    threads: int,
    deadline: float,
    precision: str | Precision = Precision.FP32,
) -> dict:
    """Time every variant of one shape (stops early at the deadline; the default is always timed)."""
    flops = 2.0 * m * n * k
    reps = max(3, min(200, int(2e8 / max(flops, 1.0))))
    candidates: dict[str, float] = {}
    for mr, kc in _variants(simd, k, m, precision):
        if candidates and time.monotonic() > deadline:
            break
        candidates[f"mr{mr}_kc{kc}"] = lib.canao_bench_gemm(
            mr, kc, m, n, k, reps, threads, Precision.parse(precision).layout.c_code
        )
    best = min(candidates, key=lambda name: candidates[name])
    mr, kc = (int(part[2:]) for part in best.split("_"))
    ms = candidates[best]
    return {"mr": mr, "kc": kc, "ms": ms, "gflops": flops / ms / 1e6, "candidates": candidates}


def tune_gemms(
    graph: Graph,
    db: TuningDatabase,
    *,
    simd: str,
    seq_len: int,
    threads: int,
    budget_s: float,
    progress: Optional[Callable[[int, int], None]] = None,
) -> tuple[dict[str, dict], int]:
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
            db.save()  # after every shape: a killed run keeps what it measured
            measured += 1
        if found is not None:
            choices[key] = found
        if progress:
            progress(i + 1, len(shapes))
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
