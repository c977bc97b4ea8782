"""The one way to compile a model: `build(lowered, BuildOptions(...)) -> Build`.

Every caller (the CLI, artifacts, the latency profiler, evaluation, reports,
the search) goes through here, so the sequence

    lowered graph -> pass pipeline -> tuned kernel variants -> C source -> shared library -> loaded model

is spelled out once. `BuildOptions` is a frozen, validated, versioned
config with a JSON round-trip; `Build` keeps every stage's output
inspectable (final graph, C source, library path) and `Build.load()` gives
the runnable `CompiledModel`. `build_timing_executable` is the same sequence
ending in the profiler's timing program for a (possibly remote) target.

Example::

    model = build(lower_model(torch_model), BuildOptions(precision="bf16")).load()
    out = model.run(input_ids)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from canao.compiler.codegen.c import generate_c, weight_blob
from canao.compiler.codegen.profiler import PROFILER_MAIN
from canao.compiler.ir import Graph
from canao.compiler.layout import Precision
from canao.compiler.passes.pipeline import run_pipeline
from canao.compiler.runtime import MAX_THREADS, CompiledModel, NativeLibrary
from canao.compiler.toolchain import build_executable, build_shared_library
from canao.compiler.tune import TuningDatabase, apply_tuning, tune_gemms
from canao.device import SimdError, resolve_simd, simd_level
from canao.errors import SpecError

OPTIONS_VERSION = 1
MAX_TUNE_SEQ_LEN = 1 << 16
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BuildOptions:
    """How to compile a model. Every field has the default a plain `canao compile` uses."""

    simd: str = "auto"  # SIMD level of the code (canao.device.SIMD_LEVELS); "auto": this CPU's widest
    precision: Precision = Precision.FP32  # matrix products: fp32, bf16 (fp32 sums) or int8 (dynamic quantization)
    threads: int = 2  # OpenMP threads the model runs (and is tuned) with
    tune_budget_s: float = 0.0  # seconds to measure GEMM shapes missing from the tuning database (0: look up only)
    tune_seq_len: int = 128  # sequence length the GEMM variants are tuned for (CANAO's setting)
    compiler: Optional[str] = None  # C compiler; None: $CC or cc. A cross compiler builds for another target
    extra_flags: tuple[str, ...] = ()  # appended to the compiler flags (e.g. sanitizers in tests)
    version: int = OPTIONS_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        object.__setattr__(self, "extra_flags", tuple(self.extra_flags))
        if self.simd != "auto":
            simd_level(self.simd)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 1 <= self.threads <= MAX_THREADS:
            raise SpecError(f"`1 <= threads <= {MAX_THREADS}` must hold, but got threads={self.threads!r}.")
        if not 0.0 <= float(self.tune_budget_s) < float("inf"):
            raise SpecError(f"`tune_budget_s >= 0` must hold, but got tune_budget_s={self.tune_budget_s!r}.")
        if not 1 <= int(self.tune_seq_len) <= MAX_TUNE_SEQ_LEN:
            raise SpecError(
                f"`1 <= tune_seq_len <= {MAX_TUNE_SEQ_LEN}` must hold, but got tune_seq_len={self.tune_seq_len!r}."
            )
        if self.version != OPTIONS_VERSION:
            raise SpecError(f"BuildOptions version {self.version} is not {OPTIONS_VERSION}; write the options again.")

    def resolved(self) -> "BuildOptions":
        """These options with `simd` made concrete: this CPU's level, or a forced one it can run.

        With a cross `compiler` the level is the target's and is not checked against this CPU."""
        if self.compiler is not None and self.simd != "auto":
            return self
        return replace(self, simd=resolve_simd(self.simd))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["precision"], data["extra_flags"] = self.precision.value, list(self.extra_flags)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BuildOptions":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown BuildOptions field(s) {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**{**data, "extra_flags": tuple(data.get("extra_flags", ()))})


def untuned_final(lowered: Graph, simd: str, precision: Precision, fuse: bool = True) -> Graph:
    """The pass pipeline for SIMD level `simd` (its panel width), GEMMs at the level's default tile height."""
    level = simd_level(simd)
    final = run_pipeline(lowered, nr=level.panel_width, precision=precision, fuse=fuse)
    return final.with_nodes(final.nodes, default_mr=level.default_mr)


def optimize(
    lowered: Graph, options: BuildOptions, progress: Optional[Progress] = None, fuse: bool = True
) -> tuple[Graph, int]:
    """Pass pipeline + tuned kernel variants: (the final graph code generation takes, GEMM shapes measured now).

    Tuned choices come from the tuning database of this CPU; with a budget,
    shapes missing from it are measured now (see tune.py). Untuned GEMMs
    use the SIMD level's default tile height (meta "default_mr"). `fuse=False` leaves out the optional
    fusions (passes/pipeline.py: OPTIONAL_FUSIONS), for reports of what they save."""
    options = options.resolved()
    final = untuned_final(lowered, options.simd, options.precision, fuse)
    choices, measured = tune_gemms(
        final,
        TuningDatabase.load(),
        simd=options.simd,
        seq_len=options.tune_seq_len,
        threads=options.threads,
        budget_s=options.tune_budget_s,
        progress=progress,
    )
    return apply_tuning(final, choices, options.tune_seq_len), measured


@dataclass(frozen=True)
class Build:
    """One compiled model: its final graph, the generated C, the cached library and the options it was built with."""

    graph: Graph
    source: str
    library: Path
    options: BuildOptions  # resolved: `simd` is concrete
    shapes_measured: int = 0  # GEMM shapes the tuner timed for this build (0: all came from the database)

    def weights(self) -> np.ndarray:
        """The packed weight blob the library reads (weights.bin)."""
        return weight_blob(self.graph)

    def load(self, threads: Optional[int] = None) -> CompiledModel:
        """The runnable model, on `threads` (default: the threads it was built for)."""
        return CompiledModel(
            self.graph,
            self.weights(),
            NativeLibrary.load(self.library),
            threads=threads or self.options.threads,
            simd=self.options.simd,
        )


def build(
    lowered: Graph, options: BuildOptions = BuildOptions(), progress: Optional[Progress] = None, fuse: bool = True
) -> Build:
    """Compile a lowered graph into a shared library for this CPU (cached by source, flags and compiler)."""
    options = options.resolved()
    final, measured = optimize(lowered, options, progress, fuse)
    source = generate_c(final)
    library = build_shared_library(
        source, simd=options.simd, extra_flags=options.extra_flags, compiler=options.compiler
    )
    return Build(final, source, library, options, measured)


def generate_for_target(lowered: Graph, options: BuildOptions) -> tuple[Graph, str]:
    """Final graph and C source for `options.simd`, a level this CPU need not run (export, cross builds).

    Where this CPU runs the level, the GEMM tiles are tuned as in `build`; elsewhere the level's default
    tile height is used (the tuning database holds this CPU's timings only)."""
    try:
        resolved = options.resolved()
    except SimdError:
        final = untuned_final(lowered, options.simd, options.precision)
    else:
        final, _ = optimize(lowered, resolved)
    return final, generate_c(final)


@dataclass(frozen=True)
class TimingBuild:
    """A graph compiled into the profiler's timing executable for the options' target."""

    graph: Graph
    executable: Path
    options: BuildOptions


def build_timing_executable(lowered: Graph, options: BuildOptions) -> TimingBuild:
    """The same sequence as `build`, linked with the timing main (codegen/profiler_main.c) into an executable."""
    options = options.resolved()
    final, _ = optimize(lowered, options)
    exe = build_executable(
        generate_c(final),
        simd=options.simd,
        extra_flags=options.extra_flags,
        compiler=options.compiler,
        extra_sources=(PROFILER_MAIN,),
    )
    return TimingBuild(final, exe, options)
