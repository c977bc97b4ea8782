"""`canao search` end to end on a tiny teacher and a synthetic profile: outputs, resume, infeasible budget."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from typer.testing import CliRunner

from canao.arch import ArchSpec
from canao.cli import app
from canao.data.bundled import SAMPLES_DIR
from canao.search.candidates import Candidate, CandidateSpace
from tests.search.conftest import TINY_ARCH, synthetic_profile

runner = CliRunner()


def test_search_command_end_to_end(tmp_path, tiny_teacher):
    space = CandidateSpace(TINY_ARCH, precisions=("fp32", "int8"), seq_lens=(64,))
    (tmp_path / "space.json").write_text(json.dumps(space.to_dict()))
    profiles = [synthetic_profile(TINY_ARCH, (64,), p, tmp_path / f"{p}.json") for p in ("fp32", "int8")]
    args = [
        "search",
        "--teacher",
        str(tiny_teacher),
        "--task",
        "sst2",
        "--space",
        str(tmp_path / "space.json"),
        "--profile",
        str(profiles[0]),
        "--profile",
        str(profiles[1]),
        "--latency-ms",
        "0.5",
        "--out",
        str(tmp_path / "run"),
        "--controller",
        "evolution",
        "--evaluations",
        "12",
        "--supernet-steps",
        "3",
        "--eval-examples",
        "64",
        "--no-measure-front",
        "--dev",
        str(SAMPLES_DIR / "sst2-dev.tsv"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "chosen:" in result.output and "Pareto front" in result.output
    best = ArchSpec.from_json((tmp_path / "run" / "best_arch.json").read_text())
    assert TINY_ARCH.contains(best)
    summary = json.loads((tmp_path / "run" / "search.json").read_text())
    assert summary["evaluations"] == 12 and summary["best"]["latency_ms"] <= 0.5 and summary["front"]
    assert space.contains(Candidate.from_dict(summary["best"]["candidate"]))
    assert (tmp_path / "run" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(app, args)  # everything is stored: the re-run replays it
    assert again.exit_code == 0 and json.loads((tmp_path / "run" / "search.json").read_text())["resumed_trials"] == 12

    too_tight = runner.invoke(
        app,
        [
            *args[:-13],
            "--latency-ms",
            "0.0001",
            "--out",
            str(tmp_path / "tight"),
            "--supernet-steps",
            "3",
            "--no-measure-front",
            "--dev",
            str(SAMPLES_DIR / "sst2-dev.tsv"),
        ],
    )
    assert too_tight.exit_code == 2 and "no member of the search space meets" in too_tight.output, too_tight.output
    missing = runner.invoke(
        app,
        [
            *args[:7],
            "--profile",
            str(profiles[0]),
            "--latency-ms",
            "1",
            "--out",
            str(tmp_path / "m"),
            "--dev",
            str(SAMPLES_DIR / "sst2-dev.tsv"),
        ],
    )
    assert missing.exit_code == 2 and "no device profile for precision(s) ['int8']" in missing.output, missing.output


@pytest.mark.slow
def test_ray_workers_give_the_serial_result(tmp_path, tiny_teacher):
    """Two local Ray actors score each round; the trials equal the serial search's (order fixed by the asks)."""
    pytest.importorskip("ray")
    from canao.search.run import SearchRunConfig, search_run

    profile = synthetic_profile(TINY_ARCH, (64,), "fp32", tmp_path / "p.json")
    (tmp_path / "space.json").write_text(json.dumps(CandidateSpace(TINY_ARCH, seq_lens=(64,)).to_dict()))
    base = SearchRunConfig(
        tiny_teacher,
        "sst2",
        SAMPLES_DIR / "sst2-train-sample.tsv",
        SAMPLES_DIR / "sst2-dev.tsv",
        (profile,),
        0.5,
        tmp_path / "serial",
        space=tmp_path / "space.json",
        controller="rl",
        evaluations=8,
        supernet_steps=2,
        eval_examples=48,
        measure_front=False,
        threads=1,
    )
    serial = search_run(base)
    shutil.copytree(tmp_path / "serial" / "supernet", tmp_path / "ray" / "supernet")  # the same trained supernet
    parallel = search_run(dataclasses.replace(base, out=tmp_path / "ray", workers=2))
    assert parallel.search.trials == serial.search.trials


def test_choice_prefers_measured_then_margin():
    from canao.compiler.layout import Precision
    from canao.search.loop import SearchResult
    from canao.search.run import choose
    from canao.search.trials import Trial

    big = TINY_ARCH.largest()
    slow, fast = Candidate(big, Precision.FP32, 64), Candidate(big.replace(layers=big.layers[:1]), Precision.FP32, 64)
    front = [
        Trial((0,), fast.to_dict(), 70.0, 4.0, 4.0, 70.0),  # fastest first, as the loop returns the front
        Trial((1,), slow.to_dict(), 80.0, 9.5, 9.5, 80.0),
    ]
    result = SearchResult(front, front[1], front, 0)
    budget = 10.0
    # measured: the accurate member came out over budget on the device, so the next one is chosen
    chosen, rule = choose(result, budget, {slow.key(): 10.6, fast.key(): 4.1}, lambda c: 0.0)
    assert chosen == fast and "measured" in rule
    chosen, rule = choose(result, budget, {slow.key(): 9.9, fast.key(): 4.1}, lambda c: 0.0)
    assert chosen == slow
    # unmeasured: 9.5 + 1.0 margin > 10 leaves the accurate one out
    chosen, rule = choose(result, budget, {}, lambda c: 1.0)
    assert chosen == fast and "margin" in rule
    chosen, rule = choose(result, budget, {}, lambda c: 0.2)
    assert chosen == slow
    chosen, rule = choose(result, budget, {}, lambda c: 100.0)  # nothing meets the margin: the search's best
    assert chosen == slow and "margin not met" in rule
