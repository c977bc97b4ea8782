"""benchmarks/accuracy.py --stages squad-teacher-bundled: the SQuAD teacher's run directory made from the bundled
QA model, so students can be distilled on a machine that never ran the hours-long teacher fine-tuning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(
        work=tmp_path / "work", squad_teacher_run=tmp_path / "teacher", squad_epochs=1.0, train_precision="fp32"
    )


def test_the_bundled_teacher_becomes_a_teacher_run_the_students_stage_reads(tmp_path: Path, accuracy_benchmark) -> None:
    from canao.models.hf import load_pretrained

    bench = accuracy_benchmark
    args = _args(tmp_path)
    bench.stage_squad_teacher_bundled(args)

    teacher = bench._task_teacher(args, "squad")
    assert teacher == tmp_path / "teacher" / "model"
    shipped = json.loads((bench.BUNDLED_QA / "metrics.json").read_text())["scores"][
        "int8-compressed (shipped)|compiled"
    ]
    assert bench._teacher_metrics(args, "squad") == shipped  # students are measured against the shipped score
    assert load_pretrained(teacher).spec.num_layers == 6  # the int8 weights load (dequantized) as the teacher
    settings = bench._teacher_settings(teacher.parent)
    assert settings.startswith("1.0 epoch(s), batch 32") and settings.endswith("bf16 training")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]  # no staging directory left behind


def test_other_runs_are_never_overwritten_a_made_one_is_reused(tmp_path: Path, accuracy_benchmark) -> None:
    bench = accuracy_benchmark
    args = _args(tmp_path)
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "keep.txt").write_text("a user's file")
    with pytest.raises(SystemExit, match="exists already"):
        bench.stage_squad_teacher_bundled(args)
    assert (tmp_path / "teacher" / "keep.txt").read_text() == "a user's file"

    args.squad_teacher_run = tmp_path / "made"
    bench.stage_squad_teacher_bundled(args)
    (tmp_path / "made" / "model" / "marker").write_text("kept")
    bench.stage_squad_teacher_bundled(args)  # a rerun of the same stage list reuses it
    assert (tmp_path / "made" / "model" / "marker").read_text() == "kept"
    with pytest.raises(SystemExit, match="made from the bundled model"):
        bench.stage_squad_teacher(args)  # would otherwise look for a training checkpoint it never had


def test_the_bundle_stage_refuses_to_ship_the_bundle_again(tmp_path: Path, accuracy_benchmark, monkeypatch) -> None:
    import canao.models.compressed

    def compress(*_args, **_kwargs):  # without the refusal: fail at once, before anything is written
        raise AssertionError("the bundle stage went on to compress the bundled model again")

    monkeypatch.setattr(canao.models.compressed, "compress_checkpoint", compress)
    bench = accuracy_benchmark
    args = _args(tmp_path)
    bench.stage_squad_teacher_bundled(args)
    shipped = {p.name: p.read_bytes() for p in bench.BUNDLED_QA.iterdir()}
    args.bundle_from, args.results = tmp_path / "teacher" / "model", tmp_path / "results.jsonl"
    with pytest.raises(SystemExit, match="the bundled model itself"):
        bench.stage_bundle(args)
    assert {p.name: p.read_bytes() for p in bench.BUNDLED_QA.iterdir()} == shipped
    assert not args.results.exists() and not args.work.exists()  # refused before any work
