"""Compiling C into a shared library or an executable: target flags, the compiler, the on-disk cache.

The SIMD level's compiler flags come from the one table in canao.device.
Outputs are cached under $CANAO_CACHE_DIR (default ~/.cache/canao/kernels) by
a hash of the source, the extra source files, the kernel headers, the flags
and the compiler version, so an unchanged model never recompiles. Hand-written
C (the kernel header, the runner, profiler and tuning mains) lives in
codegen/ as real files, compiled as they are with `-I codegen/`.

Example::

    lib_path = build_shared_library(source, simd="avx2")
    exe_path = build_executable(source, simd="neon", compiler="aarch64-linux-gnu-gcc", extra_sources=(RUNNER_MAIN,))
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from canao.device import c_compiler, simd_level
from canao.errors import CanaoError

CODEGEN_DIR = Path(__file__).with_name("codegen")
BASE_FLAGS = ("-O3", "-std=c11", "-fPIC", "-fopenmp", "-ffp-contract=fast", "-Wall", "-Wextra")


class BuildError(CanaoError, RuntimeError):
    """The C compiler is missing or rejected the code."""


def cache_dir() -> Path:
    return Path(os.environ.get("CANAO_CACHE_DIR", Path.home() / ".cache" / "canao" / "kernels"))


def compile_flags(simd: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    return (*BASE_FLAGS, *simd_level(simd).cc_flags, *extra)


def build_shared_library(
    source: Optional[str],
    *,
    simd: str,
    extra_flags: Sequence[str] = (),
    compiler: Optional[str] = None,
    extra_sources: Sequence[Path] = (),
) -> Path:
    """Compile `source` (and `extra_sources`) to a cached .so and return its path (compiles only on a cache miss)."""
    return _build(source, simd, tuple(extra_flags), compiler, tuple(extra_sources), shared=True)


def build_executable(
    source: Optional[str],
    *,
    simd: str,
    extra_flags: Sequence[str] = (),
    compiler: Optional[str] = None,
    extra_sources: Sequence[Path] = (),
) -> Path:
    """Compile `source` and `extra_sources` (one of them has a main) to a cached executable; `compiler` may be a
    cross compiler."""
    return _build(source, simd, tuple(extra_flags), compiler, tuple(extra_sources), shared=False)


def _cache_key(
    source: Optional[str], flags: tuple[str, ...], cc: str, extra_sources: tuple[Path, ...], shared: bool
) -> str:
    texts = [source or "", " ".join(flags), cc, c_compiler(cc), str(shared)]
    texts += [p.read_text() for p in extra_sources]
    texts += [p.read_text() for p in sorted(CODEGEN_DIR.glob("*.h"))]  # what the extra sources include
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:24]


def _build(
    source: Optional[str],
    simd: str,
    extra_flags: tuple[str, ...],
    compiler: Optional[str],
    extra_sources: tuple[Path, ...],
    shared: bool,
) -> Path:
    cc = compiler or os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise BuildError(f"no C compiler `{cc}` found; install gcc (apt-get install gcc) or set CC.")
    flags = compile_flags(simd, extra_flags)
    key = _cache_key(source, flags, cc, extra_sources, shared)
    target = cache_dir() / (f"libcanao-{key}.so" if shared else f"canao-exe-{key}")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "model.out"
        sources = [str(p) for p in extra_sources]
        if source is not None:
            (Path(tmp) / "model.c").write_text(source)
            sources.insert(0, str(Path(tmp) / "model.c"))
        cmd = [cc, *flags, "-I", str(CODEGEN_DIR), *(["-shared"] if shared else []), *sources, "-o", str(out), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"{cc} failed on generated code:\n{proc.stderr[-4000:]}")
        os.chmod(out, 0o755)
        os.replace(out, target)  # atomic: a concurrent build of the same key is harmless
    return target
