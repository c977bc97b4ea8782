"""Exported C packages vs the in-process runtime, per precision, same checkpoint, same machine, one run.

    .venv/bin/python benchmarks/export.py [--model DIR] [--precisions fp32,bf16,int8] [--tokens 128] [--threads 2]
        [--reps 30] [--rounds 5] [--starts 5]

For each precision the checkpoint (default: the bundled teacher, all-MiniLM-L6-v2) is compiled into an artifact
and exported for linux-x86_64 (the package's own Makefile builds it), then:

  size       stripped bytes of libcanao_model.so (the runtime without weights, every SIMD level of the package)
             and weights.bin, and the levels the package carries
  start-up   wall time of a fresh process from launch to the first embedding: `canao-model-run embed` (reads and
             checks weights.bin, loads the tokenizer, one forward) vs `python -c` importing canao, loading the
             artifact and embedding once; median of --starts
  latency    one forward at --tokens tokens: the C API (`canao-model-run bench`, median of --reps) and
             CompiledModel.run in process (median of --reps), in alternating rounds (--rounds, every precision
             in each round); the table gives the median over rounds and its spread (min-max)

The CPU is named with the table. Do not run it while other work loads the machine.
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

TEXT = "a gripping, funny and moving film"


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


def _c_bench(pkg: Path, threads: int, tokens: int, reps: int) -> dict:
    runner = pkg / "build" / "canao-model-run"
    cmd = [
        str(runner),
        "-d",
        str(pkg),
        "--threads",
        str(threads),
        "bench",
        "--tokens",
        str(tokens),
        "--reps",
        str(reps),
    ]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def _py_bench(model, tokens: int, reps: int) -> float:
    ids = (1000 + 7 * np.arange(tokens)) % model.spec.vocab_size
    for _ in range(3):
        model.run(ids)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.run(ids)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _spread(values: list[float]) -> str:
    return f"{np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the bundled teacher)")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()

    from canao.compiler.artifact import load_artifact
    from canao.compiler.build import BuildOptions
    from canao.compiler.checkpoint import compile_checkpoint
    from canao.device import describe_machine
    from canao.export.package import export_artifact

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="canao-export-bench-"))
    rows: dict[str, dict] = {}
    try:
        for p in precisions:
            art = tmp / f"art-{p}"
            compile_checkpoint(args.model, art, BuildOptions(precision=p, threads=args.threads))
            result = export_artifact(art, "linux-x86_64", tmp / f"pkg-{p}")
            pkg = result.out
            script = (
                "from canao.compiler.artifact import load_artifact; from canao.apps.inference import embed; "
                f"embed(load_artifact({str(art)!r}, threads={args.threads}), [{TEXT!r}])"
            )
            runner = [str(pkg / "build" / "canao-model-run"), "-d", str(pkg), "--threads", str(args.threads)]
            rows[p] = {
                "levels": result.levels,
                "lib": _stripped(pkg / "build" / "libcanao_model.so", tmp),
                "weights": (pkg / "weights.bin").stat().st_size,
                "c_start": _wall([*runner, "embed", "-t", TEXT], args.starts),
                "py_start": _wall([sys.executable, "-c", script], args.starts),
                "model": load_artifact(art, threads=args.threads).model,
                "pkg": pkg,
                "c": [],
                "py": [],
            }
        for _ in range(args.rounds):
            for p in precisions:
                r = rows[p]
                bench = _c_bench(r["pkg"], args.threads, args.tokens, args.reps)
                r["simd"], r["open_ms"] = bench["simd"], bench["open_ms"]
                r["c"].append(float(bench["median_ms"]))
                r["py"].append(_py_bench(r["model"], args.tokens, args.reps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    machine = describe_machine()
    print(f"\n{machine.cpu_model} ({machine.simd_level}), {args.threads} threads, {args.tokens} tokens, batch 1\n")
    print("| precision | package levels | picks | libcanao_model.so stripped | weights.bin |\n|---|---|---|---:|---:|")
    for p, r in rows.items():
        print(f"| {p} | {', '.join(r['levels'])} | {r['simd']} | {r['lib']:,} B | {r['weights'] / 2**20:.1f} MiB |")
    print(
        f"\nForward at {args.tokens} tokens, ms: median over {args.rounds} alternating rounds of each one's median "
        f"of {args.reps} (min-max over rounds)\n"
    )
    print("| precision | C package | in process | package / in process | start-up C / Python (ms) |")
    print("|---|---:|---:|---:|---:|")
    for p, r in rows.items():
        ratio = float(np.median(r["c"])) / float(np.median(r["py"]))
        print(
            f"| {p} | {_spread(r['c'])} | {_spread(r['py'])} | {ratio:.2f} | {r['c_start']:.0f} / {r['py_start']:.0f} |"
        )


if __name__ == "__main__":
    main()
