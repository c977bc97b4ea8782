"""How OpenMP worker threads wait between parallel regions, idle and under load: which default survives a busy CPU.

A compiled model opens one OpenMP parallel region per fused op, so its
threads wait at a barrier dozens of times per call. libgomp's threads spin
while they wait (for a while by default, forever with OMP_WAIT_POLICY=ACTIVE,
not at all with PASSIVE). Spinning is cheap on an idle machine and ruinous
on a busy one: a spinning thread burns the time slice that the thread it
waits for needs. A server runs several models and requests at once, so the
default must not collapse under load.

Every (policy, load) cell runs in a fresh process (libgomp reads the policy
once, when it is loaded) and times, with canao's compiled runtime and 2
threads: the MiniLM teacher on 1 and on 128 tokens, and one decode step of
the bundled decoder at a context of 64 tokens. Loads: none; a CPU hog (one
busy process per core); a neighbour (another process running the MiniLM
artifact at 128 tokens in a loop, with the same policy).

Usage::

    .venv/bin/python benchmarks/wait_policy.py [--runs 50] [--write docs/wait-policy.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# libgomp's own default (OMP_WAIT_POLICY unset) is GOMP_SPINCOUNT=300000: spin that long, then sleep. canao sets
# PASSIVE when neither variable is set, so the first row names libgomp's default explicitly.
POLICIES = {
    "libgomp default (spin 300k, then sleep)": {"GOMP_SPINCOUNT": "300000"},
    "ACTIVE (always spin)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "short spin (GOMP_SPINCOUNT=10000), then sleep": {"GOMP_SPINCOUNT": "10000"},
    "PASSIVE (sleep at once; canao's default)": {"OMP_WAIT_POLICY": "PASSIVE"},
}
LOADS = ("idle", "CPU hog (1 busy process per core)", "neighbour (another canao model looping)")

MEASURE = """
import json, sys
import numpy as np
from canao.compiler.artifact import load_artifact
from canao.latency.timing import measure_ms
encoder, decoder, runs = load_artifact(sys.argv[1]).model, load_artifact(sys.argv[2]).model, int(sys.argv[3])
one, many = np.array([101]), np.arange(128) % 1000 + 1000
session = decoder.new_session()
session.prefill(np.arange(64) % 100)

def step():
    session.length = 64  # rewind: every step decodes at the same context
    return session.decode_step(7)

out = {}
for name, fn in (("encoder, 1 token", lambda: encoder.run(one)), ("encoder, 128 tokens", lambda: encoder.run(many)),
                 ("decode step at 64", step)):
    stats = measure_ms(fn, warmup=5, runs=runs)
    out[name] = [stats.median_ms, stats.p90_ms]
print(json.dumps(out))
"""

NEIGHBOUR = """
import sys, numpy as np
from canao.compiler.artifact import load_artifact
model, ids = load_artifact(sys.argv[1]).model, np.arange(128) % 1000 + 1000
while True:
    model.run(ids)
"""

HOG = "while True: pass"


def _env(policy: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **policy}


def build_artifacts(directory: Path) -> tuple[Path, Path]:
    from canao.compiler.build import BuildOptions
    from canao.compiler.checkpoint import compile_checkpoint
    from canao.models.teacher import bundled_decoder_dir

    encoder, decoder = directory / "minilm", directory / "decoder"
    compile_checkpoint(None, encoder, BuildOptions())
    compile_checkpoint(bundled_decoder_dir(), decoder, BuildOptions())
    return encoder, decoder


def start_load(load: str, encoder: Path, env: dict[str, str]) -> list[subprocess.Popen]:
    if load.startswith("CPU hog"):
        return [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 2)]
    if load.startswith("neighbour"):
        return [subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(encoder)], env=env)]
    return []


def measure_cell(policy: dict[str, str], load: str, encoder: Path, decoder: Path, runs: int) -> dict:
    env = _env(policy)
    loaders = start_load(load, encoder, env)
    try:
        time.sleep(2.0 if loaders else 0.2)  # let the load reach its steady state
        proc = subprocess.run(
            [sys.executable, "-c", MEASURE, str(encoder), str(decoder), str(runs)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        for p in loaders:
            p.kill()
            p.wait()
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(results: dict, runs: int) -> str:
    from canao.device import describe_machine

    machine = describe_machine()
    lines = [
        f"OpenMP wait policy, canao compiled runtime, 2 threads, batch 1, median (p90) ms of {runs} calls; "
        f"{machine.cpu_model} ({machine.simd_level}, {machine.cores} cores).",
        "",
    ]
    measures = list(next(iter(next(iter(results.values())).values())))
    lines += ["| policy | load | " + " | ".join(measures) + " |", "|---|---|" + "---:|" * len(measures)]
    for policy, by_load in results.items():
        for load, cells in by_load.items():
            lines.append(
                f"| {policy} | {load} | "
                + " | ".join(f"{cells[m][0]:.2f} ({cells[m][1]:.2f})" for m in measures)
                + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--write", type=Path, help="Also write the markdown table here.")
    parser.add_argument("--policies", default="", help="Only the policies whose name contains this text.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        encoder, decoder = build_artifacts(Path(tmp))
        results: dict[str, dict] = {}
        for name, policy in POLICIES.items():
            if args.policies not in name:
                continue
            results[name] = {}
            for load in LOADS:
                results[name][load] = measure_cell(policy, load, encoder, decoder, args.runs)
                print(f"{name} / {load}: {results[name][load]}", flush=True)
    table = render(results, args.runs)
    print(table)
    if args.write:
        args.write.write_text(table)


if __name__ == "__main__":
    main()
