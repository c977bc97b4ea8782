"""benchmarks/accuracy.py --more-epochs: a finished student trains on from its own weights in a new run directory
(a longer schedule added in a later sitting), without rerunning the student it goes on from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def test_more_epochs_go_on_from_the_finished_student(tmp_path: Path, accuracy_benchmark, monkeypatch) -> None:
    bench = accuracy_benchmark
    args = argparse.Namespace(
        work=tmp_path / "work",
        squad_teacher_run=tmp_path / "teacher",
        squad_epochs=1.0,
        train_precision="fp32",
        students="l4-h384-a4-f384",
        init="prune",
        prune_layers=None,
        augment=0,
        intermediate_epochs=0.5,
        student_epochs=2.0,
        more_epochs=1.0,
        results=tmp_path / "results.jsonl",
        threads=2,
    )
    bench.stage_squad_teacher_bundled(args)  # a real teacher directory, made in seconds
    calls = []

    def distill(config, teacher, spec, train, dev, progress=None, start_from=None):  # records what would train
        calls.append((config, start_from))
        out = Path(config.train.output_dir)
        (out / "model").mkdir(parents=True, exist_ok=True)
        (out / "model" / "config.json").write_text("{}")
        metrics = {"f1": 70.0 + len(calls)}
        (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "teacher_layers": [1, 2, 3, 5]}))
        return bench.TrainResult(10, 1.0, metrics)

    monkeypatch.setattr(bench, "distill", distill)
    monkeypatch.setattr(bench, "compiled_latencies", lambda specs, *_: [40.0] + [10.0] * (len(specs) - 1))
    bench.stage_squad_students(args)

    base = tmp_path / "work" / "squad-l4-h384-a4-f384-pruned-layers1235"
    (first, no_start), (more, start) = calls
    assert no_start is None and first.init == "prune" and first.intermediate_epochs == 0.5
    assert Path(more.train.output_dir) == base.with_name(base.name + "-more1") and start == base / "model"
    assert (more.train.epochs, more.train.lr, more.intermediate_epochs) == (1.0, bench.MORE_LR, 0.0)
    # the prediction layer alone: intermediate_epochs=0 with the intermediate weights left on would be one stage
    # with every term, the teacher run on every step (no logit cache), another recipe than the one recorded
    assert (more.hidden_weight, more.attention_weight, more.value_weight) == (0.0, 0.0, 0.0)
    assert (more.logit_weight, more.hard_weight, more.temperature) == (
        first.logit_weight,
        first.hard_weight,
        first.temperature,
    )
    assert more.train.batch_size == first.train.batch_size and more.train.max_length == first.train.max_length
    records = [json.loads(line) for line in args.results.read_text().splitlines()]
    students = [r for r in records if r["stage"] == "squad-student"]
    name = base.name.removeprefix("squad-")
    assert [r["name"] for r in students] == [name, name + "-more1"]
    assert students[1]["recipe"].startswith("pruned from the teacher (its layers [1, 2, 3, 5]), 0.5 epochs")
    assert students[1]["recipe"].endswith("+ 1 more epochs prediction layer (warm restart, lr 5e-05)")
    assert students[1]["gap_points"] == students[1]["teacher_metric"] - 72.0
    latency = records[-1]
    assert latency["stage"] == "squad-latency" and len(latency["students"]) == 2

    calls.clear()  # the student is finished now: a rerun goes on from it without training it again
    bench.stage_squad_students(args)
    assert [start for _, start in calls] == [base / "model"]
