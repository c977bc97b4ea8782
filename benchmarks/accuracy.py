"""Accuracy benchmark: fine-tune the MiniLM teacher on SST-2 and SQuAD, distill a 4-layer 256-hidden student.

Stages (run one or all; each appends its figures, command and wall time to
--results as JSON lines):
  sst2     fine-tune the teacher on the full SST-2 train set, report dev accuracy (target >= 89%)
  squad    no SQuAD train file exists offline: train on an article-level split of
           ../shared/data/squad/dev-v1.1-part-a.json (the first 24 articles) and report EM/F1 on the
           questions of the other 12 (> 1,000); --squad-train/--squad-dev take the official files instead
  distill  distill encoder L4 H256 (8 heads x 32, FFN 1024; a slice of the teacher) from the SST-2
           teacher, report its dev accuracy and the gap
  precision  score the models the stages above left in --work with PyTorch and compiled fp32, bf16 and
           int8 (the deployed runtimes), and how many predictions each compiled one shares with PyTorch

    .venv/bin/python benchmarks/accuracy.py --stages sst2,distill --results docs/accuracy.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from canao.arch import ArchSpec
from canao.data.squad import read_squad
from canao.train.distill import DistillConfig, distill
from canao.train.finetune import FinetuneConfig, finetune

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STUDENT = ArchSpec.uniform(
    "encoder", vocab_size=30522, max_positions=512, hidden=256, num_layers=4, heads=8, head_dim=32, ffn=1024
)


def _log(step: int, total: int, loss: float) -> None:
    if step % 100 == 0 or step == total:
        print(f"  step {step}/{total} loss {loss:.4f}", flush=True)


def _record(results: Path, entry: dict) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry, indent=2), flush=True)


def stage_sst2(args) -> None:
    start = time.perf_counter()
    config = FinetuneConfig(
        "sst2", args.work / "sst2", epochs=args.epochs, batch_size=32, lr=5e-5, max_length=128, save_every=500
    )
    result = finetune(config, None, SHARED / "glue/SST-2/train.tsv", SHARED / "glue/SST-2/dev.tsv", progress=_log)
    _record(
        args.results,
        {
            "stage": "sst2 fine-tune (teacher)",
            "model": "all-MiniLM-L6-v2",
            "metrics": result.metrics,
            "steps": result.steps,
            "epochs": args.epochs,
            "wall_min": (time.perf_counter() - start) / 60,
        },
    )


def _split_squad(args) -> tuple[Path, Path]:
    if args.squad_train and args.squad_dev:
        return args.squad_train, args.squad_dev
    data = json.loads((SHARED / "squad/dev-v1.1-part-a.json").read_text())
    train, dev = dict(data, data=data["data"][:24]), dict(data, data=data["data"][24:])
    paths = (args.work / "squad-train-split.json", args.work / "squad-dev-split.json")
    args.work.mkdir(parents=True, exist_ok=True)
    for path, part in zip(paths, (train, dev)):
        path.write_text(json.dumps(part))
    return paths


def stage_squad(args) -> None:
    start = time.perf_counter()
    train, dev = _split_squad(args)
    questions = sum(len(p.questions) for a in read_squad(dev) for p in a.paragraphs)
    config = FinetuneConfig(
        "squad",
        args.work / "squad",
        epochs=args.epochs,
        batch_size=16,
        lr=1e-4,
        max_length=384,
        doc_stride=128,
        save_every=200,
    )
    result = finetune(config, None, train, dev, progress=_log)
    _record(
        args.results,
        {
            "stage": "squad v1.1 fine-tune (teacher, article split)",
            "eval_questions": questions,
            "metrics": result.metrics,
            "steps": result.steps,
            "wall_min": (time.perf_counter() - start) / 60,
        },
    )


def stage_distill(args) -> None:
    start = time.perf_counter()
    config = DistillConfig(
        FinetuneConfig(
            "sst2",
            args.work / "distill-sst2",
            epochs=args.epochs,
            batch_size=32,
            lr=1e-4,
            max_length=128,
            save_every=500,
        )
    )
    result = distill(
        config,
        args.work / "sst2" / "model",
        STUDENT,
        SHARED / "glue/SST-2/train.tsv",
        SHARED / "glue/SST-2/dev.tsv",
        progress=_log,
    )
    teacher = json.loads((args.work / "sst2" / "metrics.json").read_text())
    _record(
        args.results,
        {
            "stage": "sst2 distill",
            "student": STUDENT.describe(),
            "metrics": result.metrics,
            "teacher_accuracy": teacher.get("accuracy"),
            "gap_points": teacher.get("accuracy", float("nan")) - result.metrics.get("accuracy", float("nan")),
            "steps": result.steps,
            "wall_min": (time.perf_counter() - start) / 60,
        },
    )


def stage_precision(args) -> None:
    from canao.train.evaluate import evaluate_checkpoint

    runs = [
        ("sst2", args.work / "sst2" / "model", SHARED / "glue/SST-2/dev.tsv", 128),
        ("sst2", args.work / "distill-sst2" / "model", SHARED / "glue/SST-2/dev.tsv", 128),
        ("squad", args.work / "squad" / "model", _split_squad(args)[1], 384),
    ]
    for task, model, data, max_length in runs:
        if not model.exists():
            print(f"skipped {model}: not trained yet (run its stage first)")
            continue
        start, scores = time.perf_counter(), {}
        for runtime, precision in (
            ("pytorch", "fp32"),
            ("compiled", "fp32"),
            ("compiled", "bf16"),
            ("compiled", "int8"),
        ):
            metrics, predictions = evaluate_checkpoint(
                model, task, data, max_length=max_length, runtime=runtime, precision=precision, threads=args.threads
            )
            scores[f"{runtime} {precision}"] = (metrics, predictions)
        reference = scores["pytorch fp32"][1]
        entry = {
            "stage": "precision",
            "task": task,
            "model": str(model.relative_to(args.work)),
            "wall_min": (time.perf_counter() - start) / 60,
        }
        for name, (metrics, predictions) in scores.items():
            same = (
                sum(reference[k] == predictions[k] for k in reference)
                if isinstance(reference, dict)
                else sum(a["prediction"] == b["prediction"] for a, b in zip(reference, predictions))
            )
            entry[name] = {
                **{k: v for k, v in metrics.items() if isinstance(v, float)},
                "same_predictions_as_pytorch": same,
                "predictions": len(reference),
            }
        _record(args.results, entry)


def write_markdown(results: Path, out: Path) -> None:
    """docs/accuracy.md from the JSON lines of the stages run so far."""
    from canao.device import describe_machine

    machine = describe_machine()
    lines = [
        "# Accuracy benchmark",
        "",
        f"Machine: {machine.cpu_model}, 2 threads, fp32. Command: `.venv/bin/python benchmarks/accuracy.py "
        f"--stages sst2,distill,squad --epochs 1`.",
        "",
        "| stage | model | data | metrics | steps | wall time |",
        "|---|---|---|---|---:|---:|",
    ]
    entries = [json.loads(line) for line in results.read_text().splitlines()]
    precision = [r for r in entries if r["stage"] == "precision"]
    for r in (r for r in entries if r["stage"] != "precision"):
        model = r.get("student") or r.get("model", "all-MiniLM-L6-v2")
        data = "SQuAD v1.1 dev part-a, 24 articles / 12 held out" if "squad" in r["stage"] else "GLUE SST-2 train / dev"
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items() if isinstance(v, float))
        if "gap_points" in r:
            metrics += f"; teacher {r['teacher_accuracy']:.2f}, gap {r['gap_points']:.2f} points"
        lines.append(f"| {r['stage']} | {model} | {data} | {metrics} | {r['steps']} | {r['wall_min']:.1f} min |")
    if precision:
        lines += [
            "",
            "## Deployed precision",
            "",
            "The fine-tuned models above, scored by PyTorch (fp32) and by the compiled model on this CPU: "
            "fp32, "
            "bf16 matrix products (bf16 operands into the GEMMs and attention's two products, fp32 sums; "
            "LayerNorm and softmax in fp32) and dynamic int8 GEMMs (int8 weights per output column, "
            "activations quantized per row at run time, int32 sums; attention's products in bf16). "
            "Command: `.venv/bin/python benchmarks/accuracy.py --stages precision`.",
            "",
            "| task | model | runtime | metrics | predictions equal to PyTorch's |",
            "|---|---|---|---|---:|",
        ]
        for r in precision:
            for runtime in ("pytorch fp32", "compiled fp32", "compiled bf16", "compiled int8"):
                if runtime not in r:
                    continue
                m = r[runtime]
                metrics = ", ".join(
                    f"{k} {v:.2f}" for k, v in m.items() if k not in ("same_predictions_as_pytorch", "predictions")
                )
                lines.append(
                    f"| {r['task']} | {r['model']} | {runtime} | {metrics} | "
                    f"{m['same_predictions_as_pytorch']} / {m['predictions']} |"
                )
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="sst2,squad,distill")
    parser.add_argument("--work", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--results", type=Path, default=Path("docs/accuracy.jsonl"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--squad-train", type=Path)
    parser.add_argument("--squad-dev", type=Path)
    parser.add_argument("--write", type=Path, help="render the results file as markdown here and exit")
    args = parser.parse_args()
    if args.write:
        write_markdown(args.results, args.write)
        return
    torch.set_num_threads(args.threads)
    stages = {"sst2": stage_sst2, "squad": stage_squad, "distill": stage_distill, "precision": stage_precision}
    for name in args.stages.split(","):
        print(f"== {name}", flush=True)
        stages[name](args)


if __name__ == "__main__":
    main()
