"""Compiling generated C into a shared library: target flags, the compiler, the on-disk cache.

The SIMD level is chosen from the CPU's features at run time (canao.latency.device)
and may be forced lower (e.g. AVX2 on an AVX-512 machine, to test that path).
Libraries are cached under $CANAO_CACHE_DIR (default ~/.cache/canao/kernels) by a
hash of source + flags + compiler version, so an unchanged model never
recompiles.

Example::

    lib_path = build_shared_library(source, simd="avx2")
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from canao.errors import CanaoError
from canao.latency.device import c_compiler, describe_machine

_AVX512 = ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c")
SIMD_FLAGS: dict[str, tuple[str, ...]] = {
    # AVX-512 plus the bf16 and int8 (VNNI) dot products: bf16 and int8 GEMMs run natively
    "avx512bf16": (*_AVX512, "-mavx512bf16", "-mavx512vnni"),
    "avx512": _AVX512,
    "avx2": ("-mavx2", "-mfma", "-mf16c"),
    "neon": (),  # NEON is part of the aarch64 baseline
    "scalar": (),
}
SIMD_LANES = {"avx512bf16": 16, "avx512": 16, "avx2": 8, "neon": 4, "scalar": 4}
BASE_FLAGS = ("-O3", "-std=c11", "-fPIC", "-fopenmp", "-ffp-contract=fast", "-Wall", "-Wextra")
SIMD_ORDER = ("scalar", "neon", "avx2", "avx512", "avx512bf16")


class BuildError(CanaoError, RuntimeError):
    """The C compiler is missing or rejected the generated code."""


def host_simd() -> str:
    return describe_machine().simd_level


def resolve_simd(requested: str | None) -> str:
    """The SIMD level to build for: the host's, or a forced one the host can run."""
    host = host_simd()
    if requested in (None, "auto"):
        return host
    if requested not in SIMD_FLAGS:
        raise BuildError(f"`simd` must be one of {sorted(SIMD_FLAGS)} or 'auto', but got {requested!r}.")
    x86 = ("scalar", "avx2", "avx512", "avx512bf16")
    if host in x86 and (requested not in x86 or x86.index(requested) > x86.index(host)):
        raise BuildError(f"this CPU supports up to {host}; it cannot run code built for {requested}.")
    return requested


def panel_width_for(simd: str) -> int:
    """NR of the GEMM micro-kernel: two SIMD vectors of output columns."""
    return 2 * SIMD_LANES[simd]


def cache_dir() -> Path:
    return Path(os.environ.get("CANAO_CACHE_DIR", Path.home() / ".cache" / "canao" / "kernels"))


def compile_flags(simd: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return (*BASE_FLAGS, *SIMD_FLAGS[simd], *extra)


def build_shared_library(source: str, *, simd: str, extra_flags: tuple[str, ...] = (),
                         compiler: str | None = None) -> Path:
    """Compile `source` to a cached .so and return its path (compiles only on a cache miss)."""
    return _build(source, simd, extra_flags, compiler, shared=True)


def build_executable(source: str, *, simd: str, extra_flags: tuple[str, ...] = (), compiler: str | None = None) -> Path:
    """Compile `source` (with a main) to a cached executable; `compiler` may be a cross compiler."""
    return _build(source, simd, extra_flags, compiler, shared=False)


def _build(source: str, simd: str, extra_flags: tuple[str, ...], compiler: str | None, shared: bool) -> Path:
    cc = compiler or os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise BuildError(f"no C compiler `{cc}` found; install gcc (apt-get install gcc) or set CC.")
    flags = compile_flags(simd, extra_flags)
    version = c_compiler(cc)
    key = hashlib.sha256("\0".join([source, " ".join(flags), cc, version, str(shared)]).encode()).hexdigest()[:24]
    target = cache_dir() / (f"libcanao-{key}.so" if shared else f"canao-prof-{key}")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, out = Path(tmp) / "model.c", Path(tmp) / "model.out"
        src.write_text(source)
        cmd = [cc, *flags, *(["-shared"] if shared else []), str(src), "-o", str(out), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"{cc} failed on generated code:\n{proc.stderr[-4000:]}")
        os.replace(out, target)  # atomic: a concurrent build of the same key is harmless
    return target

