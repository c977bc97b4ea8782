"""Score the bundled QA model at every compiled precision and record it, so `canao serve` / `canao qa` can run the
fastest precision whose accuracy holds (canao.apps.bundled.serving_precision).

The choice is made on a validation split carved from the SQuAD v1.1 training set (the last articles, `--val-questions`
questions); dev part A is scored too and only reported (the model card's table). The model was fine-tuned on the
whole training set, so validation scores are higher than dev: the choice compares precisions with each other on the
same examples, which is what it needs. Writes the `precisions` entry of the bundled model's metrics.json (with
--write) and prints a markdown table with the CPU named.

    .venv/bin/python benchmarks/bundled_precisions.py \\
        --squad-train ../shared/data/squad/train-v1.1.reconstructed.json.gz \\
        --squad-dev ../shared/data/squad/dev-v1.1-part-a.json --write
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "int8")


def validation_split(train: Path, questions: int, out: Path) -> int:
    """The last articles of the training file holding at least `questions` questions, as a SQuAD JSON file."""
    opener = gzip.open if train.name.endswith(".gz") else open
    with opener(train, "rt", encoding="utf-8") as f:
        data = json.load(f)
    picked, count = [], 0
    for article in reversed(data["data"]):
        picked.insert(0, article)
        count += sum(len(p["qas"]) for p in article["paragraphs"])
        if count >= questions:
            break
    out.write_text(json.dumps({"version": data.get("version", "1.1"), "data": picked}))
    return count


def score(model: Path, data: Path, precision: str, threads: int) -> dict[str, float]:
    from canao.train.evaluate import evaluate_checkpoint

    start = time.perf_counter()
    metrics, _ = evaluate_checkpoint(
        model, "squad", data, max_length=384, runtime="compiled", precision=precision, threads=threads
    )
    return {**{k: float(v) for k, v in metrics.items()}, "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    from canao.device import describe_machine
    from canao.models.teacher import bundled_qa_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad-train", type=Path, required=True)
    parser.add_argument("--squad-dev", type=Path, required=True)
    parser.add_argument("--val-questions", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="record the scores in the bundled model's metrics.json")
    args = parser.parse_args()

    model = bundled_qa_dir()
    machine = describe_machine()
    with tempfile.TemporaryDirectory() as tmp:
        val = Path(tmp) / "val.json"
        count = validation_split(args.squad_train, args.val_questions, val)
        rows = {p: {"validation": score(model, val, p, args.threads)} for p in PRECISIONS}
        for p in PRECISIONS:
            rows[p]["dev"] = score(model, args.squad_dev, p, args.threads)
    print(f"bundled QA model, compiled, 384 tokens, stride 128, {args.threads} threads, {machine.cpu_model}")
    print(f"validation: the last {count} questions of the training set; dev: {args.squad_dev.name}\n")
    print("| precision | validation EM | validation F1 | dev EM | dev F1 |\n|---|---:|---:|---:|---:|")
    for p, r in rows.items():
        v, d = r["validation"], r["dev"]
        print(f"| {p} | {v['exact_match']:.2f} | {v['f1']:.2f} | {d['exact_match']:.2f} | {d['f1']:.2f} |")
    if args.write:
        path = model / "metrics.json"
        record = json.loads(path.read_text())
        record["precisions"] = {
            "metric": "f1",
            "validation": f"the last {count} questions of SQuAD v1.1 train ({args.squad_train.name})",
            "dev": args.squad_dev.name,
            "cpu": machine.cpu_model,
            "scores": rows,
            "command": "benchmarks/bundled_precisions.py --write",
        }
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
