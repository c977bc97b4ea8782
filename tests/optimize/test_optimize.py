"""`canao optimize` end to end on a tiny teacher and the bundled SST-2 sample: every stage runs, the artifact
serves, the report parses; a re-run reuses the stages, a killed run resumes, --from re-runs, a budget nobody
meets ends with the binding constraint."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pytest

from canao.compiler.artifact import load_artifact
from canao.errors import SpecError
from canao.optimize import OptimizeConfig, optimize, stage_names
from canao.optimize.config import PRESETS, space_around
from canao.optimize.report import REPORT_SCHEMA
from tests.hf_factories import save_tiny_bert_with_tokenizer

TINY_EFFORT = dict(
    hidden_fractions=(1.0,),
    depth_fractions=(0.5, 1.0),
    heads_fractions=(0.5, 1.0),
    ffn_fractions=(1.0,),
    teacher_steps=8,
    profile_reps=5,
    profile_passes=1,
    calibration_models=2,
    supernet_steps=4,
    evaluations=6,
    eval_examples=64,
    intermediate_epochs=0.2,
    distill_steps=4,
    tune_budget_s=0.0,
    timing_runs=5,
)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    return save_tiny_bert_with_tokenizer(tmp_path_factory.mktemp("teacher") / "bert", hidden=64, ffn=128)


def _config(out, teacher, **kw):
    base = dict(out=out, teacher=teacher, task="sst2", precision="fp32", preset_overrides=TINY_EFFORT)
    return OptimizeConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_teacher):
    out = tmp_path_factory.mktemp("optimize") / "run"
    seen = []
    result = optimize(_config(out, tiny_teacher, latency_ms=50.0), progress=lambda s, n, d, t: seen.append(s))
    return out, result, seen


def test_every_stage_runs_and_the_artifact_serves(finished):
    out, result, seen = finished
    assert result.status == "done" and result.binding is None
    assert list(dict.fromkeys(seen)) == stage_names()
    for stage in stage_names():
        assert json.loads((out / stage / "stage.json").read_text())["stage"] == stage
    art = load_artifact(result.artifact)
    outputs = art.model.run([101, 2023, 3185, 2001, 2307, 102])
    assert next(iter(outputs.values())).shape[-1] == 2  # SST-2 logits from the compiled student
    chosen = json.loads((out / "report.json").read_text())["chosen"]
    assert art.model.spec.to_dict() == chosen["spec"]
    evaluation = json.loads((out / "evaluate" / "stage.json").read_text())["output"]
    shipped = evaluation["precisions"][evaluation["chosen_precision"]]["metrics"]
    assert chosen["metrics"] == shipped  # the shipped build's scores, not the PyTorch fp32 student's
    distilled = json.loads((out / "distill" / "stage.json").read_text())["output"]["metrics"]
    assert chosen["fp32_pytorch_metrics"] == distilled


def test_report_json_and_html(finished):
    out, result, _ = finished
    report = json.loads(result.report_json.read_text())
    for key, kind in REPORT_SCHEMA.items():
        assert isinstance(report[key], kind), key
    assert {r["model"] for r in report["accuracy_latency"]} == {"teacher", "student"}
    assert {r["runtime"] for r in report["accuracy_latency"]} >= {"pytorch", "canao"}
    assert all(r["ms"] > 0 for r in report["accuracy_latency"])
    assert report["per_op"]["fused"] and len(report["per_op"]["unfused"]) > len(report["per_op"]["fused"])
    assert report["predictor_error"] and all("error_pct" in e for e in report["predictor_error"])
    assert [s["stage"] for s in report["stages"]] == stage_names()

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.images, self.text = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "img":
                self.images.append(dict(attrs)["src"])
            assert tag not in ("script", "link")  # self-contained, nothing fetched

        def handle_data(self, data):
            self.text.append(data)

    page = Page()
    page.feed(result.report_html.read_text())
    assert page.tags.count("table") >= 4 and page.images[0].startswith("data:image/png;base64,")
    text = " ".join(page.text)
    assert "Pareto" in text or "Accuracy vs latency" in text
    assert f"canao serve {result.artifact}" in text


def test_a_second_run_reuses_every_stage(finished, tiny_teacher):
    out, first, _ = finished
    again = optimize(_config(out, tiny_teacher, latency_ms=50.0))
    assert again.reused == stage_names() and again.artifact == first.artifact


def test_killed_run_resumes_at_its_stage_and_from_reruns(tmp_path, finished, tiny_teacher):
    out, _, _ = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    config = _config(run, tiny_teacher, latency_ms=50.0)

    def die_in_compile(stage, note, done, total):
        if stage == "compile":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(config, progress=die_in_compile, start_from="distill")
    assert (run / "superseded").exists()  # the earlier distill and compile were moved aside, not deleted
    assert not (run / "compile" / "stage.json").exists()
    resumed = optimize(config)
    assert resumed.reused == stage_names()[: stage_names().index("compile")]
    assert resumed.status == "done"
    with pytest.raises(SpecError, match="--from"):
        optimize(config, start_from="nonsense")


def test_a_longer_search_reuses_the_trained_supernet(tmp_path, finished, tiny_teacher):
    out, _, _ = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    longer = _config(run, tiny_teacher, latency_ms=50.0, preset_overrides={**TINY_EFFORT, "evaluations": 8})
    result = optimize(longer)
    assert result.reused == stage_names()[: stage_names().index("search")]
    assert json.loads((run / "search" / "stage.json").read_text())["output"]["evaluations"] >= 8


def test_a_pruned_augmented_distillation_reruns_from_the_distill_stage(tmp_path, finished, tiny_teacher):
    out, _, _ = finished
    default_key = json.loads((out / "distill" / "stage.json").read_text())["key"]
    assert set(default_key) == {"epochs", "steps"}  # the key of runs made before the options: they are reused
    run = tmp_path / "run"
    shutil.copytree(out, run)
    result = optimize(_config(run, tiny_teacher, latency_ms=50.0, student_init="prune", augment=1))
    assert result.reused == stage_names()[: stage_names().index("distill")] and result.status == "done"
    first_stage = json.loads((run / "distill" / "intermediate" / "metrics.json").read_text())
    assert first_stage["initialised"].startswith("pruned from the teacher")
    output = json.loads((run / "distill" / "stage.json").read_text())["output"]
    assert output["student_init"] == "prune" and output["augment"] == 1
    report = json.loads(result.report_json.read_text())
    assert report["config"]["student_init"] == "prune" and report["config"]["augment"] == 1


def test_a_budget_nobody_meets_ends_with_the_binding_constraint(tmp_path, finished, tiny_teacher):
    out, _, _ = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    result = optimize(_config(run, tiny_teacher, latency_ms=0.001))
    assert result.status == "infeasible" and result.artifact is None
    assert "no member of the search space meets 0.001 ms" in result.binding and "Raise the budget" in result.binding
    report = json.loads(result.report_json.read_text())
    assert report["status"] == "infeasible" and report["chosen"] is None and report["binding"] == result.binding
    search = json.loads((run / "search" / "stage.json").read_text())["output"]
    front = json.loads((run / "search" / "best-effort" / "search.json").read_text())["front"]
    assert front and search["best_effort_budget_ms"] > 0.001  # the front of what the space can meet
    assert "binding constraint" in result.report_html.read_text()


def test_space_around_the_default_teacher_is_the_documented_space():
    from canao.models.teacher import load_teacher

    spec = load_teacher().spec
    full = space_around(spec, PRESETS["full"])
    assert full.hidden_choices == (256, 320, 384) and full.layer_choices == (2, 3, 4, 5, 6)
    assert full.heads_choices == (4, 6, 8, 12) and full.ffn_choices == (384, 768, 1152, 1536)
    quick = space_around(spec, PRESETS["quick"])
    assert quick.hidden_choices == (256, 384) and quick.heads_choices == (4, 8, 12)


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(SpecError, match="preset"):
        OptimizeConfig(out=tmp_path, preset="medium")
    with pytest.raises(SpecError, match="latency_ms"):
        OptimizeConfig(out=tmp_path, latency_ms=0.0)
    with pytest.raises(SpecError, match="unknown preset field"):
        OptimizeConfig(out=tmp_path, preset_overrides={"epochz": 1})
    with pytest.raises(SpecError, match="student_init"):
        OptimizeConfig(out=tmp_path, student_init="random")
    with pytest.raises(SpecError, match="augment"):
        OptimizeConfig(out=tmp_path, task="squad", augment=2)


def test_precision_auto_picks_the_fastest_within_the_tolerance():
    from canao.optimize.stages import pick_precision

    rows = {
        "fp32": {"metric": 90.0, "measured_ms": 10.0},
        "bf16": {"metric": 89.8, "measured_ms": 6.0},
        "int8": {"metric": 88.0, "measured_ms": 4.0},
    }
    assert pick_precision(rows, 90.0, 0.5, 8.0)[0] == "bf16"  # int8 loses 2 points
    assert pick_precision(rows, 90.0, 3.0, 8.0)[0] == "int8"
    chosen, rule = pick_precision(rows, 90.0, 0.5, 5.0)  # nothing within tolerance meets the budget
    assert chosen == "bf16" and "misses the budget" in rule
    assert pick_precision(rows, 95.0, 0.5, 8.0)[0] is None


def test_report_renders_in_headless_chromium(finished):
    """The page as a person sees it: the plot decodes and every table is laid out (screenshot to
    $CANAO_SCREENSHOTS when set; docs/img/optimize-report.png is the committed one)."""
    import os
    from pathlib import Path

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("needs Debian chromium and chromium-driver (installed by .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    _, result, _ = finished
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(result.report_html.resolve().as_uri())
        image = driver.find_element(By.ID, "front")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 300
        tables = driver.find_elements(By.TAG_NAME, "table")
        assert len(tables) >= 4 and all(t.size["height"] > 20 for t in tables)
        assert "Chosen ArchSpec" in driver.find_element(By.TAG_NAME, "body").text
        target = os.environ.get("CANAO_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(target) / "optimize-report.png"))
    finally:
        driver.quit()


def test_cli_refuses_bad_settings_before_doing_any_work(tmp_path):
    from typer.testing import CliRunner

    from canao.cli import app

    runner = CliRunner()
    for args, words in (
        (["--preset", "medium"], "preset"),
        (["--from", "nonsense"], "--from"),
        (["--task", "lm"], "task"),
        (["--precision", "fp16"], "precision"),
        (["--student-init", "random"], "student_init"),
    ):
        result = runner.invoke(app, ["optimize", "--out", str(tmp_path / "run"), *args])
        assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_teacher_already_fine_tuned_for_the_task_is_only_scored(tmp_path):
    from canao.optimize.stages import OptimizeState, run_teacher

    teacher = save_tiny_bert_with_tokenizer(tmp_path / "sst2-teacher", "BertForSequenceClassification")
    state = OptimizeState(_config(tmp_path / "run", teacher))
    out = run_teacher(state)
    assert out["fine_tuned_here"] is False and out["model"] == str(teacher)
    assert out["metrics"]["examples"] == 872 and 0 <= out["metrics"]["accuracy"] <= 100
    assert not (tmp_path / "run" / "teacher" / "checkpoint.pt").exists()


def test_a_second_optimize_into_a_run_in_use_is_refused(tmp_path, tiny_teacher):
    from canao.storage import RunBusyError
    from tests.test_storage import _hold_in_another_process

    holder = _hold_in_another_process(tmp_path / "run")
    try:
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}.*optimize run"):
            optimize(_config(tmp_path / "run", tiny_teacher, latency_ms=50.0))
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".canao.lock"]  # nothing started


def test_the_quick_preset_checkpoints_within_a_minute(tmp_path, tiny_teacher, monkeypatch):
    import canao.optimize.stages as stages

    assert PRESETS["quick"].checkpoint_every_s <= 60 and PRESETS["full"].checkpoint_every_s <= 300
    state = stages.OptimizeState(OptimizeConfig(out=tmp_path / "run", teacher=tiny_teacher, task="sst2"))
    state.outputs.update(teacher={"model": str(tiny_teacher)}, profile={"profiles": {}, "space": "space.json"})
    monkeypatch.setattr(stages, "budget_ms", lambda _state: (10.0, "a test budget"))
    assert stages.search_config(state).save_every_s == PRESETS["quick"].checkpoint_every_s  # the supernet's
