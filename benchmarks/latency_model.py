"""Latency-model benchmark: canao's predictor against fitted FLOPs and a roofline, per length and precision.

For each precision, profiles the search space on this machine (drift-corrected, see
canao/latency/profile.py) at the requested sequence lengths, draws N architectures of the space
(seeded; none is a calibration model of the profile), compiles and measures each at every length
(native timing of the whole model, random weights, the fastest of 3 sweeps' medians: the statistic
the profile uses), and reports per (length, precision) the mean absolute percentage error and the
Spearman rank correlation with the measured latency of:

  canao predictor         composed compiled blocks, calibrated (the paper's compiler-aware model)
  FLOPs fitted            ms = a * GFLOPs + b, least squares on the profile's calibration models
  roofline                per layer FLOPs / best block rate + bytes / measured copy bandwidth
  FLOPs, PyTorch eager    rank only (not in ms of this runtime)

`--load` also profiles under a competing process (a compiled block looping on core 0) and scores that
profile on the same idle measurements; `--repeat K` repeats profile + measure K times and reports the
spread of the predictor's MAPE. Profiles go to the cache (keyed by device and settings) unless
--profile-dir is given; an existing profile is reused (delete it to re-profile).

    .venv/bin/python benchmarks/latency_model.py --seq-lens 32,128,384 --precisions fp32,bf16,int8 \
        --load --write docs/latency.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from canao.arch import ArchSpec, SearchSpace
from canao.device import describe_machine
from canao.latency.baselines import FittedFlops, Roofline, measure_bandwidth_gbs
from canao.latency.device import make_executor
from canao.latency.predictor import LatencyPredictor, spearman
from canao.latency.profile import (
    DeviceProfile,
    ProfileConfig,
    block_spec,
    build_options,
    calibration_specs,
    default_profile_path,
    drift_factor,
    expected_jobs,
    measure_model,
    profile_device,
    quiet_level,
    synthetic_weights,
    time_reference_block,
)
from canao.latency.timing import measure_ms
from canao.models import build_model
from canao.search.space import default_encoder_space, load_space


def eager_ms(spec: ArchSpec, seq_len: int, runs: int) -> float:
    torch.manual_seed(0)
    model = build_model(spec).eval()
    ids = torch.randint(0, spec.vocab_size, (1, seq_len))
    with torch.inference_mode():
        return measure_ms(lambda: model(ids), warmup=3, runs=runs).median_ms


class CompetingLoad:
    """A compiled transformer layer looping on core 0 with one thread: the noisy neighbour of a shared machine."""

    def __init__(self, space: SearchSpace, seq_len: int) -> None:
        from canao.compiler.build import build_timing_executable
        from canao.compiler.codegen.c import weight_blob
        from canao.compiler.lower import lower_block

        spec = block_spec(space, max(space.hidden_choices), max(space.heads_choices), max(space.ffn_choices))
        spec = spec.replace(vocab_size=1)
        options = build_options(make_executor("local"), 1, seq_len, space.kind, "fp32")
        timing = build_timing_executable(
            lower_block(spec, synthetic_weights(spec, np.random.default_rng(0)), "layer"), options
        )
        self.weights = Path(f"/tmp/canao-load-{time.time_ns()}.bin")
        weight_blob(timing.graph).tofile(self.weights)
        argv = [str(timing.executable), str(self.weights), str(seq_len), "0", "1", "100000000"]
        taskset = ["taskset", "-c", "0"] if sys.platform.startswith("linux") else []
        self.proc = subprocess.Popen(taskset + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.weights.unlink(missing_ok=True)


def _profile(config: ProfileConfig, path: Path, label: str) -> tuple[LatencyPredictor, Optional[float]]:
    executor = make_executor("local")
    seconds = None
    if not path.exists() or not _complete(path, config):
        start = time.perf_counter()
        profile_device(
            config, executor, path, lambda key, done, total: print(f"[{label} {done}/{total}] {key}", flush=True)
        )
        seconds = time.perf_counter() - start
    return LatencyPredictor(DeviceProfile.load(path)), seconds


def _complete(path: Path, config: ProfileConfig) -> bool:
    profile = DeviceProfile.load(path)
    entries = list(profile.blocks.values()) + profile.calibration
    return sum(min(len(e["sweeps"]), config.passes) for e in entries) >= expected_jobs(config)


def _draw(space: SearchSpace, config: ProfileConfig, models: int, seed: int) -> list[ArchSpec]:
    excluded = {json.dumps(s.to_dict(), sort_keys=True) for s in calibration_specs(config)}
    rng, specs = np.random.default_rng(seed), []
    while len(specs) < models:
        spec = space.sample(rng)
        if json.dumps(spec.to_dict(), sort_keys=True) not in excluded:
            specs.append(spec)
    return specs


def _measure(
    specs: list[ArchSpec], seq_len: int, config: ProfileConfig, sweeps: int, quiet: float
) -> tuple[list[float], list[float]]:
    """Each model's fastest sweep, raw and drift-corrected to the profile's quiet level: the profile's
    reference block is timed before every 4th model and at the end, as during profiling."""
    executor, clock = make_executor("local"), 0
    reference: list[dict] = []
    taken: list[list[dict]] = [[] for _ in specs]
    with tempfile.TemporaryDirectory() as tmp:
        for sweep in range(sweeps):
            for i, spec in enumerate(specs):
                if i % 4 == 0:
                    clock += 1
                    reference.append({"at": clock, "median_ms": time_reference_block(config, executor, Path(tmp))})
                clock += 1
                timing = measure_model(spec, executor, seq_len, threads=config.threads, precision=config.precision)
                taken[i].append({"at": clock, "median_ms": timing.median_ms})
                print(f"[measure {config.precision} T{seq_len} sweep {sweep + 1}, {i + 1}/{len(specs)}]", flush=True)
        reference.append({"at": clock + 1, "median_ms": time_reference_block(config, executor, Path(tmp))})
    factor = drift_factor(reference, quiet)
    raw = [min(t["median_ms"] for t in ts) for ts in taken]
    corrected = [min(t["median_ms"] * factor(t["at"]) for t in ts) for ts in taken]
    return raw, corrected


def _scores(pred: np.ndarray, meas: np.ndarray) -> tuple[float, float, float]:
    errors = np.abs(pred - meas) / meas * 100
    return float(np.mean(errors)), float(np.max(errors)), spearman(pred, meas)


def run_setting(args, space: SearchSpace, precision: str, repeat: int) -> list[dict]:
    """Profile (idle, and under load with --load) once for this precision, then score every length."""
    config = ProfileConfig(space, seq_lens=tuple(args.seq_lens), threads=args.threads, precision=precision)
    suffix = f"-r{repeat}" if repeat else ""
    base = args.profile_dir / f"{precision}{suffix}.json" if args.profile_dir else None
    idle_path = base or default_profile_path(config).with_suffix(f"{suffix}.json")
    idle, idle_s = _profile(config, idle_path, f"profile {precision}")
    loaded = None
    if args.load:
        load_path = idle_path.with_name(idle_path.stem + "-load.json")
        if not load_path.exists() or not _complete(load_path, config):
            load = CompetingLoad(space, max(args.seq_lens))
            try:
                loaded, _ = _profile(config, load_path, f"profile {precision} under load")
            finally:
                load.stop()
        else:
            loaded = _profile(config, load_path, "")[0]
    specs = _draw(space, config, args.models, args.seed)
    flops, roof = FittedFlops.fit(idle.profile), Roofline.from_profile(idle.profile, args.bandwidth_gbs)
    results = []
    for seq_len in args.seq_lens:
        raw, corrected = _measure(specs, seq_len, config, args.sweeps, quiet_level(idle.profile.reference))
        measured, measured_raw = np.array(corrected), np.array(raw)
        rows = {
            "canao predictor": np.array([idle.predict_ms(s, seq_len) for s in specs]),
            "FLOPs fitted (a*GFLOPs+b)": np.array([flops.predict_ms(s, seq_len) for s in specs]),
            "roofline": np.array([roof.predict_ms(s, seq_len) for s in specs]),
        }
        if loaded is not None:
            rows["canao predictor, profiled under load"] = np.array([loaded.predict_ms(s, seq_len) for s in specs])
        entry = {
            "precision": precision,
            "seq_len": seq_len,
            "repeat": repeat,
            "profile_s": idle_s,
            "models": len(specs),
            "scores": {name: _scores(pred, measured) for name, pred in rows.items()},
            "scores_vs_raw": {name: _scores(pred, measured_raw) for name, pred in rows.items()},
            "rank_only": {
                "FLOPs": spearman([s.flops(seq_len) for s in specs], measured),
                "PyTorch eager": spearman([eager_ms(s, seq_len, 5) for s in specs], measured) if args.eager else None,
            },
            "uncertainty_ms_median": float(np.median([idle.uncertainty_ms(s, seq_len) for s in specs])),
            "within_uncertainty": float(
                np.mean(
                    [
                        abs(p - m) <= idle.uncertainty_ms(s, seq_len)
                        for s, p, m in zip(specs, rows["canao predictor"], measured)
                    ]
                )
            ),
            "roofline_rates": {"gflops_per_s": roof.gflops_per_s, "gbytes_per_s": roof.gbytes_per_s},
            "rows": [
                {
                    "spec": s.describe(),
                    "measured_ms": float(m),
                    "measured_raw_ms": float(r),
                    **{k: float(v[i]) for k, v in rows.items()},
                }
                for i, (s, m, r) in enumerate(zip(specs, measured, measured_raw))
            ],
        }
        results.append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "rows"}, indent=1), flush=True)
    return results


def render(results: list[dict], args, command: str) -> str:
    machine = describe_machine()
    lines = [
        "# Latency model benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine.cpu_model}, SIMD {machine.simd_level}, {args.threads} threads; {args.models} random "
        "architectures of the space per setting, batch 1; compiled latency measured natively (median of 30 calls "
        f"after 5 warm-up calls, fastest of {args.sweeps} sweeps, the statistic the profile uses), drift-corrected "
        "to the profile's quiet level by the profile's reference block timed between the models (as the "
        "profile corrects its blocks); the raw measurements are scored too. Roofline: "
        f"compute rate = the best layer block of the profile, bandwidth = {args.bandwidth_gbs:.1f} GB/s (array copy).",
    ]
    for precision in dict.fromkeys(r["precision"] for r in results):
        for seq_len in dict.fromkeys(r["seq_len"] for r in results):
            group = [r for r in results if r["precision"] == precision and r["seq_len"] == seq_len]
            if not group:
                continue
            first = group[0]
            lines += [
                "",
                f"## {precision}, {seq_len} tokens",
                "",
                "| latency estimate | MAPE | worst error | Spearman | MAPE vs raw measured | Spearman vs raw |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for name in first["scores"]:
                mapes = [r["scores"][name][0] for r in group]
                mape = f"{np.mean(mapes):.2f}%" + (
                    f" (+- {np.std(mapes):.2f}, {len(group)} repeats)" if len(group) > 1 else ""
                )
                worst = max(r["scores"][name][1] for r in group)
                rho = np.mean([r["scores"][name][2] for r in group])
                raw_mape = np.mean([r["scores_vs_raw"][name][0] for r in group])
                raw_rho = np.mean([r["scores_vs_raw"][name][2] for r in group])
                lines.append(f"| {name} | {mape} | {worst:.1f}% | {rho:.3f} | {raw_mape:.2f}% | {raw_rho:.3f} |")
            lines.append(f"| FLOPs (rank only) | | | {first['rank_only']['FLOPs']:.3f} | | |")
            if first["rank_only"].get("PyTorch eager") is not None:
                lines.append(
                    f"| PyTorch eager measured (rank only) | | | {first['rank_only']['PyTorch eager']:.3f} | | |"
                )
            lines.append("")
            lines.append(
                f"Predictor uncertainty: median +- {first['uncertainty_ms_median']:.3f} ms; "
                f"{100 * first['within_uncertainty']:.0f}% of the measured latencies lie within it."
                + (f" Profiling took {first['profile_s'] / 60:.1f} min." if first.get("profile_s") else "")
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, help="SearchSpace JSON (default: the built-in encoder space)")
    parser.add_argument("--seq-lens", type=lambda s: [int(x) for x in s.split(",")], default=[128])
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, int8")
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=1, help="profile + measure this many times")
    parser.add_argument("--load", action="store_true", help="also profile under a competing process")
    parser.add_argument("--eager", action="store_true", help="also rank by PyTorch eager latency")
    parser.add_argument("--profile-dir", type=Path, help="where profiles go (default: the cache)")
    parser.add_argument("--results", type=Path, help="append the raw results here (JSON lines)")
    parser.add_argument("--write", type=Path, help="write the markdown tables here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = load_space(args.space) if args.space else default_encoder_space()
    args.bandwidth_gbs = measure_bandwidth_gbs()
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for precision in args.precisions.split(","):
        for repeat in range(args.repeat):
            for entry in run_setting(args, space, precision, repeat):
                results.append(entry)
                if args.results:
                    with args.results.open("a") as f:
                        f.write(json.dumps(entry) + "\n")
    command = ".venv/bin/python benchmarks/latency_model.py " + " ".join(sys.argv[1:])
    text = render(results, args, command)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
