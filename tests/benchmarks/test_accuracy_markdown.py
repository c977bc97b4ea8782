"""benchmarks/accuracy.py --write: the report is regenerated from the results file, hand-written notes survive."""

from __future__ import annotations

import json
from pathlib import Path


def _student(name: str, accuracy: float) -> dict:
    return {
        "stage": "sst2-student",
        "name": name,
        "student": f"encoder {name}",
        "metrics": {"accuracy": accuracy},
        "teacher_metric": 89.68,
        "gap_points": 89.68 - accuracy,
        "recipe": "pruned",
        "wall_min_this_invocation": 16.0,
        "machine": "test CPU",
    }


def test_rewriting_keeps_each_sections_notes_and_adds_new_rows(tmp_path: Path, accuracy_benchmark) -> None:
    bench = accuracy_benchmark
    results, out = tmp_path / "results.jsonl", tmp_path / "accuracy.md"
    results.write_text(json.dumps(_student("l3-a", 87.04)) + "\n")
    bench.write_markdown(results, out)
    text = out.read_text()
    assert text.count(bench.NOTES_MARK) == 2  # the preamble and the one students section
    assert "| 87.04 | 89.68 | 2.64 |" in text

    # A person writes under the students section's mark and under a section the results no longer produce.
    students_heading = "## SST2 students: accuracy and compiled latency"
    head, tail = text.split(students_heading)
    tail = tail.replace(bench.NOTES_MARK, bench.NOTES_MARK + "\n\nThe pruned start beats slicing.\n", 1)
    gone = f"\n## A retired section\n\n{bench.NOTES_MARK}\n\nOld evidence, still wanted.\n"
    out.write_text(head + students_heading + tail + gone)

    with results.open("a") as f:
        f.write(json.dumps(_student("l3-b", 88.88)) + "\n")
    bench.write_markdown(results, out)
    rewritten = out.read_text()
    assert "| 88.88 | 89.68 | 0.80 |" in rewritten and "| 87.04 |" in rewritten
    section = rewritten.split(students_heading)[1]
    assert section.index("| 88.88 |") < section.index("The pruned start beats slicing.")
    assert "## A retired section" in rewritten and "Old evidence, still wanted." in rewritten

    bench.write_markdown(results, out)  # a third rewrite changes nothing
    assert out.read_text() == rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.md", "results.jsonl"]  # no temp file left
