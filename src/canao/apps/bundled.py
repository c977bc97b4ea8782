"""The apps' default models: checkpoints shipped in the wheel, compiled for this CPU on first use.

`canao generate` and `canao qa` without an artifact use these. Each runs
at the fastest precision this CPU multiplies natively whose recorded accuracy
stays within SERVING_TOLERANCE of fp32 (`serving_precision`). The
compiled artifact is cached under $CANAO_CACHE_DIR/bundled (default
~/.cache/canao/bundled), keyed by model, canao version, precision and CPU fingerprint,
so the first call pays one compile (seconds) and later calls only load.
Writing goes through write_artifact (temp dir, then rename), so two
processes racing on a first use cannot leave a half-written artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from canao import __version__
from canao.apps.inference import AppError
from canao.compiler.artifact import Artifact, load_artifact
from canao.storage import cache_root


def bundled_cache() -> Path:
    return cache_root() / "bundled"


def bundled_checkpoint(task: str) -> Path:
    """The shipped checkpoint for `task`; an AppError saying what to pass instead when none is shipped."""
    from canao.errors import MissingDependencyError
    from canao.models.teacher import bundled_dir

    try:
        return bundled_dir(task)
    except MissingDependencyError as err:
        raise AppError(
            f"{err} Or pass an artifact directory (compile a {task} checkpoint with `canao compile --model DIR "
            "--out ART`)."
        ) from None


SERVING_TOLERANCE = 0.5  # points of the recorded metric a faster precision may lose against compiled fp32


def serving_precision(checkpoint: Path, simd: Optional[str] = None) -> tuple[str, str]:
    """The precision to run a bundled checkpoint at on this CPU, and why: the fastest one this CPU multiplies
    natively whose recorded validation score (metrics.json `precisions`, written by
    benchmarks/bundled_precisions.py) is within SERVING_TOLERANCE of compiled fp32's; fp32 when none is recorded."""
    from canao.device import resolve_simd, simd_level

    native = simd_level(resolve_simd(simd)).native_precisions
    try:
        record = json.loads((checkpoint / "metrics.json").read_text()).get("precisions") or {}
        metric = str(record["metric"])
        scores = {p: float(r["validation"][metric]) for p, r in record["scores"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "fp32", "fp32: no per-precision scores are recorded for this model"
    if "fp32" not in scores:
        return "fp32", "fp32: the recorded scores have no fp32 reference"
    floor = scores["fp32"] - SERVING_TOLERANCE
    for precision in reversed(native):  # fastest first
        if precision in scores and scores[precision] >= floor:
            if precision == "fp32":
                break
            return precision, (
                f"{precision}: validation {metric} {scores[precision]:.2f}, within {SERVING_TOLERANCE} of fp32's "
                f"{scores['fp32']:.2f}, and native on this CPU"
            )
    return "fp32", f"fp32: no faster precision native on this CPU keeps validation {metric} within {SERVING_TOLERANCE}"


def bundled_artifact(task: str, *, threads: int = 2, precision: Optional[str] = None) -> Artifact:
    """The bundled model for `task`, compiled for this CPU (once; cached) and loaded, at `precision` (default:
    serving_precision's choice)."""
    from canao.compiler.build import BuildOptions
    from canao.compiler.checkpoint import compile_checkpoint
    from canao.compiler.layout import Precision
    from canao.device import fingerprint

    checkpoint = bundled_checkpoint(task)
    chosen = Precision.parse(precision or serving_precision(checkpoint)[0])
    out = bundled_cache() / f"{checkpoint.name}-{__version__}-{chosen.value}-{fingerprint()[:12]}"
    if not (out / "manifest.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        compile_checkpoint(checkpoint, out, BuildOptions(threads=threads, precision=chosen), force=out.exists())
    return load_artifact(out, threads=threads)
