"""The apps' default models: checkpoints shipped in the wheel, compiled for this CPU on first use.

`canao generate` and `canao qa` without an artifact use these. The
compiled artifact is cached under $CANAO_CACHE_DIR/bundled (default
~/.cache/canao/bundled), keyed by model, canao version and CPU fingerprint,
so the first call pays one compile (seconds) and later calls only load.
Writing goes through write_artifact (temp dir, then rename), so two
processes racing on a first use cannot leave a half-written artifact.
"""

from __future__ import annotations

from pathlib import Path

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


def bundled_artifact(task: str, *, threads: int = 2) -> Artifact:
    """The bundled model for `task`, compiled for this CPU (once; cached) and loaded."""
    from canao.compiler.build import BuildOptions
    from canao.compiler.checkpoint import compile_checkpoint
    from canao.device import fingerprint

    checkpoint = bundled_checkpoint(task)
    out = bundled_cache() / f"{checkpoint.name}-{__version__}-{fingerprint()[:12]}"
    if not (out / "manifest.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        compile_checkpoint(checkpoint, out, BuildOptions(threads=threads), force=out.exists())
    return load_artifact(out, threads=threads)
