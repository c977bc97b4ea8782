"""What machine this is: CPU model, cores, SIMD level, C compiler, and a fingerprint.

Compiled kernels and tuning results are only valid for the CPU they were made
on, so everything the compiler caches is keyed by `fingerprint()`. SIMD
flags come from /proc/cpuinfo (x86 `flags`, aarch64 `Features`).

Example::

    info = describe_machine()
    info.simd_level  # 'avx512' | 'avx2' | 'neon' | 'scalar'
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

_INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                      "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "asimddp", "sve")


@dataclass(frozen=True)
class MachineInfo:
    arch: str
    cpu_model: str
    cores: int
    simd_flags: tuple[str, ...]
    simd_level: str
    compiler: str

    def to_dict(self) -> dict:
        return asdict(self)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict (empty where unavailable)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def simd_level_from_flags(arch: str, flags: set[str]) -> str:
    """The widest SIMD level canao has kernels for, given the CPU's flags."""
    if arch in ("aarch64", "arm64"):
        return "neon" if ("asimd" in flags or not flags) else "scalar"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "scalar"


def c_compiler() -> str:
    """First line of `$CC --version` (default cc), or 'none found'."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return "none found"
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "none found"
    return out.splitlines()[0].strip() if out else "unknown"


def describe_machine() -> MachineInfo:
    info = _cpuinfo()
    arch = platform.machine()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Hardware") or info.get("CPU part") or platform.processor() or "unknown"
    return MachineInfo(
        arch=arch,
        cpu_model=model,
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        simd_flags=tuple(f for f in _INTERESTING_FLAGS if f in flags),
        simd_level=simd_level_from_flags(arch, flags),
        compiler=c_compiler(),
    )


def fingerprint(info: MachineInfo | None = None) -> str:
    """A short stable id of (arch, CPU model, SIMD flags, compiler): the key of compiled/tuned caches."""
    info = info or describe_machine()
    key = "|".join([info.arch, info.cpu_model, ",".join(info.simd_flags), info.compiler])
    return f"{info.arch}-{info.simd_level}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
