"""Exported C package vs the Python runtime, same artifact, same machine, one run: code size, start-up, latency.

    .venv/bin/python benchmarks/export.py --artifact ART [--tokens 128] [--threads 2] [--reps 50]

Exports ART for linux-x86_64 into a temporary directory (the package's own Makefile builds it), then:

  size       stripped bytes of libcanao_model.so and canao-model-run (the runtime without weights), weights.bin
  start-up   wall time of a fresh process from launch to the first result: `canao-model-run classify` (reads and
             checks weights.bin, loads the tokenizer, one forward) vs `python -c` importing canao, loading the
             artifact and running one forward; median of --starts runs
  latency    one forward at --tokens tokens: the C API (`canao-model-run bench`) vs CompiledModel.run in-process,
             median of --reps after warm-up, --threads threads both

Do not run it while other work loads the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _stripped(path: Path, tmp: Path) -> int:
    copy = tmp / f"{path.name}.stripped"
    shutil.copyfile(path, copy)
    subprocess.run(["strip", str(copy)], check=True)
    return copy.stat().st_size


def _wall(cmd: list[str], starts: int) -> float:
    times = []
    for _ in range(starts):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True, help="a classification artifact (canao compile)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()

    from canao.compiler.artifact import load_artifact
    from canao.export.package import export_artifact

    tmp = Path(tempfile.mkdtemp(prefix="canao-export-bench-"))
    try:
        pkg = export_artifact(args.artifact, "linux-x86_64", tmp / "pkg").out
        runner = pkg / "build" / "canao-model-run"
        sizes = {
            "libcanao_model.so (stripped)": _stripped(pkg / "build" / "libcanao_model.so", tmp),
            "canao-model-run (stripped)": _stripped(runner, tmp),
            "weights.bin": (pkg / "weights.bin").stat().st_size,
        }
        bench = json.loads(
            subprocess.run(
                [
                    str(runner),
                    "-d",
                    str(pkg),
                    "--threads",
                    str(args.threads),
                    "bench",
                    "--tokens",
                    str(args.tokens),
                    "--reps",
                    str(args.reps),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        text = "a gripping, funny and moving film"
        c_start = _wall(
            [str(runner), "-d", str(pkg), "--threads", str(args.threads), "classify", "-t", text], args.starts
        )
        script = (
            "from canao.compiler.artifact import load_artifact; from canao.apps.inference import classify; "
            f"classify(load_artifact({str(args.artifact)!r}, threads={args.threads}), {text!r})"
        )
        py_start = _wall([sys.executable, "-c", script], args.starts)

        model = load_artifact(args.artifact, threads=args.threads).model
        ids = (1000 + 7 * np.arange(args.tokens)) % model.spec.vocab_size
        for _ in range(3):
            model.run(ids)
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            model.run(ids)
            times.append((time.perf_counter() - t0) * 1e3)
        py_ms = float(np.median(times))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nSizes ({args.artifact}):\n")
    print("| file | bytes |\n|---|---:|")
    for name, size in sizes.items():
        print(f"| {name} | {size:,} |")
    print(f"\nStart-up and latency ({args.threads} threads, C code level {bench['simd']}):\n")
    print("| | C package | Python runtime | C / Python |\n|---|---:|---:|---:|")
    print(
        f"| process start -> first classification (ms, median of {args.starts}) | {c_start:.1f} | {py_start:.1f} | "
        f"{c_start / py_start:.2f} |"
    )
    print(f"| open weights.bin (read + checksum, ms) | {bench['open_ms']:.1f} | - | - |")
    print(
        f"| forward at {args.tokens} tokens (ms, median of {args.reps}) | {bench['median_ms']:.2f} | {py_ms:.2f} | "
        f"{bench['median_ms'] / py_ms:.2f} |"
    )


if __name__ == "__main__":
    main()
