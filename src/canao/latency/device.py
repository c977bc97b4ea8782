"""How to run on the device being profiled: executors for this machine, qemu-aarch64 or a remote template.

What this machine is (CPU, SIMD level, fingerprint) lives in canao.device;
this module adds the device the latency model is built for. An `Executor`
runs the profiler's timing executables on the target: locally, or through a
command template such as `ssh phone {cmd}` or `qemu-aarch64 -L /usr/aarch64-linux-gnu {cmd}`, so a phone can be profiled
from a workstation (with a shared or pushed file system: the template's
`{cmd}` gets the same paths the workstation uses).

Example::

    executor = make_executor("qemu-aarch64")
    executor.run([str(exe), "weights.bin", "128", "0", "5", "30"])
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from dataclasses import dataclass
from typing import Optional, Sequence

from canao.compiler.runtime import prefer_passive_waiting
from canao.device import describe_machine, fingerprint
from canao.errors import CanaoError


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
        prefer_passive_waiting()  # timing programs wait the way deployed models do (the environment is inherited)
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
        return Executor(
            "qemu-aarch64",
            QEMU_AARCH64,
            "neon",
            compiler or "aarch64-linux-gnu-gcc",
            "aarch64 under qemu-user (emulated: timings are not the phone's)",
        )
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
