"""What machine this is (CPU model, cores, SIMD level, compiler, fingerprint) and how to run on it.

Compiled kernels and tuning results are only valid for the CPU they were made
on, so everything the compiler caches is keyed by `fingerprint()`. SIMD
flags come from /proc/cpuinfo (x86 `flags`, aarch64 `Features`).

An `Executor` runs the profiler's timing executables on the target: locally,
or through a command template such as `ssh phone {cmd}` or
`qemu-aarch64 -L /usr/aarch64-linux-gnu {cmd}`, so a phone can be profiled
from a workstation (with a shared or pushed file system: the template's
`{cmd}` gets the same paths the workstation uses).

Example::

    info = describe_machine()
    info.simd_level  # 'avx512bf16' | 'avx512' | 'avx2' | 'neon' | 'scalar'
    executor = make_executor("qemu-aarch64")
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from canao.errors import CanaoError

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
        return "avx512bf16" if {"avx512_bf16", "avx512_vnni"} <= flags else "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "scalar"


def c_compiler(cc: Optional[str] = None) -> str:
    """First line of `<cc> --version` (default: $CC, else cc), or 'none found'."""
    cc = cc or os.environ.get("CC", "cc")
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


class ExecutorError(CanaoError, RuntimeError):
    """A timing executable failed on the target device."""


@dataclass(frozen=True)
class Executor:
    """Runs a command on the target: directly (`template` None) or inside a shell template with `{cmd}`.

    `simd`, `compiler` and `description` say what code to build for the target
    and how to name it in a profile."""

    name: str
    template: Optional[str]
    simd: str
    compiler: Optional[str]  # None: the host's cc
    description: str

    def run(self, argv: Sequence[str], timeout_s: float = 600.0) -> str:
        if self.template is None:
            cmd: list[str] | str = list(argv)
            shell = False
        else:
            if "{cmd}" not in self.template:
                raise ExecutorError(f"the device template {self.template!r} must contain {{cmd}}.")
            cmd, shell = self.template.replace("{cmd}", shlex.join(argv)), True
        proc = subprocess.run(cmd, shell=shell, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise ExecutorError(f"{self.name}: `{argv[0]}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        return proc.stdout


QEMU_AARCH64 = "qemu-aarch64 -L /usr/aarch64-linux-gnu {cmd}"


def make_executor(device: str, *, simd: Optional[str] = None, compiler: Optional[str] = None) -> Executor:
    """'local', 'qemu-aarch64' (NEON code cross-compiled and emulated: for correctness, not timing),
    or a command template with {cmd} (give `simd` and `compiler` for the target)."""
    if device == "local":
        level = simd or describe_machine().simd_level
        return Executor("local", None, level, compiler, f"local {describe_machine().cpu_model} ({level})")
    if device == "qemu-aarch64":
        return Executor("qemu-aarch64", QEMU_AARCH64, "neon", compiler or "aarch64-linux-gnu-gcc",
                        "aarch64 under qemu-user (emulated: timings are not the phone's)")
    if "{cmd}" not in device:
        raise ExecutorError(f"device {device!r} is neither 'local', 'qemu-aarch64' nor a template containing {{cmd}}.")
    if simd is None:
        raise ExecutorError("a remote device template needs --simd (the target's SIMD level, e.g. neon).")
    return Executor(device.split()[0], device, simd, compiler, f"remote via `{device}` ({simd})")


def executor_fingerprint(executor: Executor) -> str:
    """The device id a profile is keyed by: the local fingerprint, or the template and target."""
    if executor.template is None:
        return f"{fingerprint()}@{executor.simd}"
    digest = hashlib.sha256(f"{executor.template}|{executor.simd}|{executor.compiler}".encode()).hexdigest()[:12]
    return f"{executor.name}-{executor.simd}-{digest}"
