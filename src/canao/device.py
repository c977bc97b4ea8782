"""This machine: CPU model, cores, SIMD level, C compiler, fingerprint; and the one table of SIMD levels.

Compiled kernels and tuning results are only valid for the CPU they were made
on, so everything the compiler caches is keyed by `fingerprint()`. SIMD
flags come from /proc/cpuinfo (x86 `flags`, aarch64 `Features`).

`SIMD_LEVELS` is the single place that says, for every SIMD level canao has
kernels for: which CPU flags it needs, which compiler flags build it, how
many float32 lanes one vector holds (the GEMM panel width NR is two
vectors), which register-tile heights MR the auto-tuner may choose and which
MR an untuned GEMM uses. The kernel header instantiates every MR listed here
and takes the default from the generated code (`CANAO_DEFAULT_MR`).

Example::

    info = describe_machine()
    info.simd_level                      # 'amx' | 'avx512bf16' | 'avx512' | 'avx2' | 'neon' | 'scalar'
    simd_level("avx2").panel_width       # 16
    resolve_simd("auto")                 # the host's level
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from canao.errors import CanaoError


class SimdError(CanaoError, ValueError):
    """An unknown SIMD level, or one this CPU cannot run."""


@dataclass(frozen=True)
class SimdLevel:
    """One SIMD level: what the CPU needs, how to compile for it, and the GEMM tile choices on it."""

    name: str
    arch: str  # "x86_64", "aarch64", or "any" (scalar)
    cpu_flags: frozenset[str]  # /proc/cpuinfo flags the level needs
    cc_flags: tuple[str, ...]  # C compiler flags that enable it
    lanes: int  # float32 lanes of one vector (the scalar fallback still uses 4-wide vector types)
    mr_choices: tuple[int, ...]  # register-tile heights the auto-tuner times (each instantiated in the header)
    default_mr: int = 6  # the tile height of an untuned GEMM (the generated C's CANAO_DEFAULT_MR)

    @property
    def panel_width(self) -> int:
        """NR of the GEMM micro-kernel: two vectors of output columns."""
        return 2 * self.lanes

    @property
    def amx_tiles(self) -> bool:
        """Whether bf16 and int8 GEMMs (32+ rows) and bf16 attention run on AMX tiles (canao_kernels.h)."""
        return "amx_tile" in self.cpu_flags

    @property
    def native_precisions(self) -> tuple[str, ...]:
        """The matrix-product precisions this level multiplies natively, fastest last: bf16 with AVX-512 BF16
        (vdpbf16ps) or AMX, int8 with AVX-512 VNNI (vpdpbusd) or AMX. Elsewhere they take the widening path:
        correct, but no faster than fp32 (docs/compiler.md)."""
        return (
            "fp32",
            *(p for p, flag in (("bf16", "avx512_bf16"), ("int8", "avx512_vnni")) if flag in self.cpu_flags),
        )


_AVX2_FLAGS = frozenset({"avx2", "fma", "f16c"})  # what -mavx2 -mfma -mf16c lets the compiler use
_AVX512_FLAGS = _AVX2_FLAGS | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}  # its code is built with those too
_AVX512_CC = ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c")

# Narrowest first: on a CPU, the widest level whose flags it has is the default.
SIMD_LEVELS: dict[str, SimdLevel] = {
    level.name: level
    for level in (
        SimdLevel("scalar", "any", frozenset(), (), 4, (4, 6)),
        SimdLevel("neon", "aarch64", frozenset(), (), 4, (4, 6, 8)),  # NEON is part of the aarch64 baseline
        SimdLevel("avx2", "x86_64", _AVX2_FLAGS, ("-mavx2", "-mfma", "-mf16c"), 8, (4, 6)),
        SimdLevel("avx512", "x86_64", _AVX512_FLAGS, _AVX512_CC, 16, (4, 6, 8, 12)),
        # AVX-512 plus the bf16 and int8 (VNNI) dot products: bf16 and int8 GEMMs run natively
        SimdLevel(
            "avx512bf16",
            "x86_64",
            _AVX512_FLAGS | {"avx512_bf16", "avx512_vnni"},
            (*_AVX512_CC, "-mavx512bf16", "-mavx512vnni"),
            16,
            (4, 6, 8, 12),
        ),
        # the above plus AMX tiles (Sapphire Rapids and later): bf16 and int8 GEMMs of 32 rows or more and bf16
        # attention on the tile unit
        SimdLevel(
            "amx",
            "x86_64",
            _AVX512_FLAGS | {"avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"},
            (*_AVX512_CC, "-mavx512bf16", "-mavx512vnni", "-mamx-tile", "-mamx-bf16", "-mamx-int8"),
            16,
            (4, 6, 8, 12),
        ),
    )
}


@dataclass(frozen=True)
class CpuidBit:
    """Where x86 CPUID reports a /proc/cpuinfo flag, and which register state the OS must save for it (XCR0
    bits, read with xgetbv): what an exported package's C checks at run time instead of /proc/cpuinfo."""

    leaf: int
    subleaf: int
    register: str  # "eax" | "ebx" | "ecx" | "edx"
    bit: int
    xcr0: int = 0  # XCR0 bits that must be set: 0x6 (SSE+AVX state), 0xE6 (plus the AVX-512 state)


_YMM, _ZMM = 0x6, 0xE6
# AMX tile state (XCR0 bits 17-18) is asked of Linux by the kernels themselves (arch_prctl, canao_kernels.h),
# which fall back to the vector code where it is refused; so AMX needs only the CPU bits here.
CPUID_BITS: dict[str, CpuidBit] = {
    "fma": CpuidBit(1, 0, "ecx", 12, _YMM),
    "f16c": CpuidBit(1, 0, "ecx", 29, _YMM),
    "avx2": CpuidBit(7, 0, "ebx", 5, _YMM),
    "avx512f": CpuidBit(7, 0, "ebx", 16, _ZMM),
    "avx512dq": CpuidBit(7, 0, "ebx", 17, _ZMM),
    "avx512bw": CpuidBit(7, 0, "ebx", 30, _ZMM),
    "avx512vl": CpuidBit(7, 0, "ebx", 31, _ZMM),
    "avx512_vnni": CpuidBit(7, 0, "ecx", 11, _ZMM),
    "avx512_bf16": CpuidBit(7, 1, "eax", 5, _ZMM),
    "amx_bf16": CpuidBit(7, 0, "edx", 22),
    "amx_tile": CpuidBit(7, 0, "edx", 24),
    "amx_int8": CpuidBit(7, 0, "edx", 25),
}


_INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
)


def simd_level(name: str) -> SimdLevel:
    """The table entry of a SIMD level, or a clear error naming the known ones."""
    try:
        return SIMD_LEVELS[name]
    except KeyError:
        raise SimdError(f"`simd` must be one of {list(SIMD_LEVELS)} or 'auto', but got {name!r}.") from None


@dataclass(frozen=True)
class MachineInfo:
    arch: str
    cpu_model: str
    cores: int
    simd_flags: tuple[str, ...]
    simd_level: str
    compiler: str

    def to_dict(self) -> dict[str, Any]:
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
    best = "scalar"
    for level in SIMD_LEVELS.values():
        if level.arch == "x86_64" and level.cpu_flags <= flags:
            best = level.name
    return best


_COMPILER_VERSIONS: dict[tuple[str, str, int], str] = {}


def c_compiler(cc: Optional[str] = None) -> str:
    """First line of `<cc> --version` (default: $CC, else cc), or 'none found'.

    Cached per (name, resolved path, modification time): loading an artifact asks several times, and a
    subprocess each time cost ~7 ms; an upgraded compiler has a new mtime, so it is asked again."""
    cc = cc or os.environ.get("CC", "cc")
    found = shutil.which(cc)
    if found is None:
        return "none found"
    try:
        real = os.path.realpath(found)
        key = (cc, real, os.stat(real).st_mtime_ns)
    except OSError:
        return "none found"
    if key not in _COMPILER_VERSIONS:
        try:
            out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "none found"
        _COMPILER_VERSIONS[key] = out.splitlines()[0].strip() if out else "unknown"
    return _COMPILER_VERSIONS[key]


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


def host_simd() -> str:
    return describe_machine().simd_level


def resolve_simd(requested: Optional[str]) -> str:
    """The SIMD level to build for on this machine: the host's ("auto"/None), or a forced one it can run."""
    host = host_simd()
    if requested in (None, "auto"):
        return host
    level, mine = simd_level(str(requested)), SIMD_LEVELS[host]
    runnable = [name for name, other in SIMD_LEVELS.items() if other.arch in ("any", mine.arch)]
    if level.name not in runnable or list(SIMD_LEVELS).index(level.name) > list(SIMD_LEVELS).index(host):
        raise SimdError(f"this CPU supports up to {host}; it cannot run code built for {level.name}.")
    return level.name


def fingerprint(info: Optional[MachineInfo] = None) -> str:
    """A short stable id of (arch, CPU model, SIMD flags, compiler): the key of compiled/tuned caches."""
    info = info or describe_machine()
    key = "|".join([info.arch, info.cpu_model, ",".join(info.simd_flags), info.compiler])
    return f"{info.arch}-{info.simd_level}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
