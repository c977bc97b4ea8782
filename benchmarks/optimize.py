"""`canao optimize` as a user runs it, and the issue's goals checked from its report: the chosen model's accuracy
and compiled latency against the fine-tuned teacher on ONNX Runtime fp32 and PyTorch, all timed in one run.

Goals (issue 17): SST-2 >= 4x faster than the teacher on ONNX Runtime at <= 1 point accuracy loss; SQuAD at
384 tokens under 15 ms p50 at <= 2 F1 loss.

    pip install '.[bench]'   # onnxruntime, after torch==2.13.0 (scripts/setup.sh)
    .venv/bin/python benchmarks/optimize.py --preset quick --out runs/opt-quick
    .venv/bin/python benchmarks/optimize.py --preset full --train ../shared/data/glue/SST-2/train.tsv \\
        --dev ../shared/data/glue/SST-2/dev.tsv --teacher runs/teacher-sst2/model --out runs/opt-full
    .venv/bin/python benchmarks/optimize.py --out runs/opt-full --write docs/optimize.md   # table only

A finished run is not re-run (every stage is reused), so the table can be printed again at no cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Optional

from canao.optimize import OptimizeConfig, optimize


def _ms(report: dict[str, Any], model: str, runtime: str, precision: str = "fp32") -> Optional[float]:
    for row in report["accuracy_latency"]:
        if row["model"] == model and row["runtime"] == runtime and row["precision"] == precision:
            return float(row["ms"])
    return None


def table(report: dict[str, Any]) -> str:
    """The markdown comparison: teacher and chosen student per runtime, ratios against the teacher on ORT."""
    metric = report["metric"]
    ort_teacher = _ms(report, "teacher", "onnxruntime")
    lines = [
        f"| model | runtime | precision | dev {metric} | median ms | x faster than teacher on ONNX Runtime |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in report["accuracy_latency"]:
        ratio = f"{ort_teacher / row['ms']:.2f}" if ort_teacher else "n/a (onnxruntime missing)"
        value = row.get(metric)
        lines.append(
            f"| {row['model']} | {row['runtime']} | {row['precision']} | "
            f"{'' if value is None else f'{value:.2f}'} | {row['ms']:.2f} | {ratio} |"
        )
    return "\n".join(lines)


def goals(report: dict[str, Any]) -> list[str]:
    """The issue's goals, each with the figure reached."""
    if report["status"] != "done":
        return [f"no artifact: {report['binding']}"]
    metric, chosen = report["metric"], report["chosen"]
    teacher_value = report["teacher"]["metrics"][metric]
    student_ms = _ms(report, "student", "canao", chosen["precision"])
    student_value = next(
        r[metric]
        for r in report["accuracy_latency"]
        if r["model"] == "student" and r["runtime"] == "canao" and r["precision"] == chosen["precision"]
    )
    loss = teacher_value - student_value
    out = [f"accuracy loss vs the teacher: {loss:.2f} points ({metric} {student_value:.2f} vs {teacher_value:.2f})"]
    ort = _ms(report, "teacher", "onnxruntime")
    if report["config"]["task"] == "squad":
        ok = student_ms is not None and student_ms < 15 and loss <= 2
        out.append(f"goal SQuAD < 15 ms p50 at <= 2 F1 loss: {'met' if ok else 'not met'} ({student_ms:.2f} ms)")
    elif ort and student_ms:
        speedup = ort / student_ms
        ok = speedup >= 4 and loss <= 1
        out.append(
            f"goal >= 4x the teacher on ONNX Runtime at <= 1 point loss: {'met' if ok else 'not met'} "
            f"({speedup:.2f}x, {loss:.2f} points)"
        )
    else:
        out.append("goal vs ONNX Runtime not checked: onnxruntime is not installed (pip install '.[bench]')")
    return out


def markdown(report: dict[str, Any], wall_min: Optional[float], command: str) -> str:
    chosen = report["chosen"]
    head = [
        f"## `canao optimize` — {report['config']['task']}, preset {report['config']['preset']}",
        "",
        f"Device: {report['device']} ({platform.machine()}); budget {report['budget_ms']:.2f} ms "
        f"({report['budget_rule']}).",
        f"Command: `{command}`" + (f"; wall time {wall_min:.1f} min." if wall_min else "."),
        "",
    ]
    if chosen:
        head += [f"Chosen: {chosen['describe']} -> {chosen['precision']} ({chosen['precision_rule']}).", ""]
    stages = ", ".join(f"{s['stage']} {s['wall_s']:.0f} s" for s in report["stages"])
    tail = ["", *[f"- {g}" for g in goals(report)], f"- stage wall times: {stages}", ""]
    return "\n".join(head) + "\n" + table(report) + "\n" + "\n".join(tail)  # a blank line before the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/optimize-quick"))
    parser.add_argument("--preset", default="quick", choices=("quick", "full"))
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--teacher", type=Path)
    parser.add_argument("--train", type=Path)
    parser.add_argument("--dev", type=Path)
    parser.add_argument("--latency-ms", type=float)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--write", type=Path, help="append the markdown table to this file")
    args = parser.parse_args()
    config = OptimizeConfig(
        out=args.out,
        teacher=args.teacher,
        task=args.task,
        train=args.train,
        dev=args.dev,
        latency_ms=args.latency_ms,
        precision=args.precision,
        preset=args.preset,
    )
    start = time.perf_counter()
    result = optimize(config, progress=lambda stage, note, done, total: None)
    wall = (time.perf_counter() - start) / 60 if not result.reused else None
    report = json.loads(result.report_json.read_text())
    command = "python benchmarks/optimize.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "write"
    )
    text = markdown(report, wall, command)
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
