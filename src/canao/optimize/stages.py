"""The stages of `canao optimize`, in order: teacher -> profile -> supernet -> search -> distill -> compile ->
evaluate -> artifact. Each takes the run state, works in RUN/<stage>/ and returns its output (JSON-able);
pipeline.py decides which stages run. The report is written after them (report.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from canao.arch import ArchSpec
from canao.compiler.layout import Precision
from canao.errors import SpecError
from canao.optimize.config import OptimizeConfig
from canao.optimize.pipeline import RunState, Stage
from canao.search.controllers import DEFAULT_CONTROLLER
from canao.storage import write_json_atomically

log = logging.getLogger(__name__)
LENGTH_BUCKETS = 50  # batches of similar length (train/finetune.py)
BEST_EFFORT_SLACK = 1.25  # an infeasible budget: the best-effort front is searched under this x the floor


class OptimizeState(RunState):
    """The run state plus the config every stage reads."""

    def __init__(self, config: OptimizeConfig, **kwargs: Any) -> None:
        super().__init__(out=Path(config.out), **kwargs)
        self.config = config
        self.predictors: tuple[Any, Any] | None = None

    def files(self) -> tuple[Path, Path]:
        from canao.data.bundled import task_files

        train, dev = task_files(self.config.task, self.config.train, self.config.dev)
        if dev is None:
            raise SpecError(f"task {self.config.task} has no bundled dev file; pass --dev FILE (held-out data).")
        return train, dev

    def executor(self) -> Any:
        from canao.latency.device import make_executor

        c = self.config
        return make_executor(c.device, simd=c.simd, compiler=c.compiler)

    def train_precision(self) -> str:
        from canao.train.finetune import train_precision

        return train_precision(self.config.train_precision)

    def progress_fn(self, stage: str) -> Any:
        return lambda done, total, value=None: self.report(stage, "" if value is None else f"{value:.4g}", done, total)


# ------------------------------------------------------------------ teacher
def run_teacher(state: OptimizeState) -> dict[str, Any]:
    """Fine-tune the teacher on the task unless the checkpoint already carries the task's trained head."""
    from canao.models.hf import load_pretrained
    from canao.models.teacher import teacher_dir
    from canao.train.evaluate import evaluate_checkpoint
    from canao.train.finetune import FinetuneConfig, finetune
    from canao.train.tasks import MODEL_TASK

    c, effort = state.config, state.config.effort
    source = Path(c.teacher) if c.teacher else teacher_dir()
    train, dev = state.files()
    loaded = load_pretrained(source)
    if loaded.task == MODEL_TASK[c.task]:
        metrics, _ = evaluate_checkpoint(source, c.task, dev, max_length=c.seq_len, threads=c.threads)
        return {"model": str(source), "fine_tuned_here": False, "metrics": metrics, "spec": loaded.spec.to_dict()}
    config = FinetuneConfig(
        c.task,
        state.dir("teacher"),
        epochs=effort.teacher_epochs,
        batch_size=32,
        lr=5e-5 if c.task != "squad" else 1e-4,
        max_length=c.seq_len,
        max_steps=effort.teacher_steps,
        seed=c.seed,
        length_buckets=LENGTH_BUCKETS,
        precision=state.train_precision(),
        save_every_s=effort.checkpoint_every_s,
    )
    result = finetune(
        config, source, train, dev, progress=lambda s, t, loss: state.report("teacher", f"{loss:.4f}", s, t)
    )
    model = Path(config.output_dir) / "model"
    return {"model": str(model), "fine_tuned_here": True, "metrics": result.metrics, "spec": loaded.spec.to_dict()}


def teacher_key(state: OptimizeState) -> dict[str, Any]:
    c = state.config
    e = c.effort
    return {
        "teacher": c.teacher,
        "task": c.task,
        "train": c.train,
        "dev": c.dev,
        "epochs": e.teacher_epochs,
        "steps": e.teacher_steps,
        "seed": c.seed,
    }


# ------------------------------------------------------------------ profile
def searched_precisions(state: OptimizeState) -> tuple[str, ...]:
    """fp32 and int8 everywhere; bf16 too where this CPU multiplies bf16 natively (else it is slower than fp32)."""
    c = state.config
    if c.precision != "auto":
        return (c.precision,)
    from canao.device import simd_level

    native = "bf16" in simd_level(state.executor().simd).native_precisions
    return ("fp32", "bf16", "int8") if native else ("fp32", "int8")


def run_profile(state: OptimizeState) -> dict[str, Any]:
    """Profile the compiled blocks of the space around the teacher on the device, per precision (cached by
    device, space and precision: a second run on the same device reuses the profiles)."""
    from canao.latency.predictor import LatencyPredictor
    from canao.latency.profile import DeviceProfile, ProfileConfig, default_profile_path, profile_device
    from canao.optimize.config import space_around
    from canao.search.candidates import CandidateSpace

    c, e = state.config, state.config.effort
    teacher = ArchSpec.from_dict(state.outputs["teacher"]["spec"])
    arch = space_around(teacher, e)
    precisions = searched_precisions(state)
    space = CandidateSpace(arch, tuple(Precision.parse(p) for p in precisions), (c.seq_len,))
    space_path = state.dir("profile") / "space.json"
    write_json_atomically(space_path, space.to_dict())
    executor = state.executor()
    profiles, teacher_ms = {}, {}
    for precision in precisions:
        config = ProfileConfig(
            arch,
            seq_lens=(c.seq_len,),
            threads=c.threads,
            reps=e.profile_reps,
            passes=e.profile_passes,
            calibration_models=e.calibration_models,
            precision=precision,
            extra_sweeps=1,
            warmup=3,
        )
        path = default_profile_path(config, executor)
        profile_device(config, executor, path, _profile_progress(state, precision))
        profiles[precision] = str(path)
        teacher_ms[precision] = LatencyPredictor(DeviceProfile.load(path)).predict_ms(teacher, c.seq_len)
    return {
        "space": str(space_path),
        "space_size": space.size(),
        "profiles": profiles,
        "device": executor.description,
        "teacher_predicted_ms": teacher_ms,
    }


def profile_key(state: OptimizeState) -> dict[str, Any]:
    c, e = state.config, state.config.effort
    return {
        "device": c.device,
        "simd": c.simd,
        "compiler": c.compiler,
        "precision": c.precision,
        "threads": c.threads,
        "fractions": [e.hidden_fractions, e.depth_fractions, e.heads_fractions, e.ffn_fractions],
        "reps": e.profile_reps,
        "passes": e.profile_passes,
        "calibration": e.calibration_models,
    }


def _profile_progress(state: OptimizeState, precision: str) -> Any:
    return lambda key, done, total: state.report("profile", f"{precision} {key[:30]}", done, total)


def budget_ms(state: OptimizeState) -> tuple[float, str]:
    """The latency budget: the user's, else a quarter of the teacher's predicted fp32 latency (the 4x goal)."""
    c = state.config
    if c.latency_ms is not None:
        return float(c.latency_ms), "given (--latency-ms)"
    predicted = state.outputs["profile"]["teacher_predicted_ms"]
    base = predicted.get("fp32", max(predicted.values()))
    return base / 4, f"a quarter of the teacher's predicted fp32 latency ({base:.2f} ms)"


# ------------------------------------------------------------ supernet, search
def search_config(state: OptimizeState) -> Any:
    from canao.search.run import SearchRunConfig

    c, e = state.config, state.config.effort
    train, dev = state.files()
    profile = state.outputs["profile"]
    return SearchRunConfig(
        Path(state.outputs["teacher"]["model"]),
        c.task,
        train,
        dev,
        tuple(Path(p) for p in profile["profiles"].values()),
        budget_ms(state)[0],
        state.out / "search",
        space=Path(profile["space"]),
        controller=DEFAULT_CONTROLLER,
        evaluations=e.evaluations,
        seed=c.seed,
        supernet_epochs=e.supernet_epochs,
        supernet_steps=e.supernet_steps,
        max_length=c.seq_len,
        eval_examples=e.eval_examples,
        measure_front=True,
        device=None if c.device == "local" else c.device,
        threads=c.threads,
        supernet_dir=state.out / "supernet",
        train_precision=state.train_precision(),
        save_every_s=e.checkpoint_every_s,
    )


def _predictors(state: OptimizeState) -> tuple[Any, Any]:
    """The search space and its latency predictors, loaded once per run (the supernet and an infeasible
    search both need them; the profiles do not change within a run)."""
    from canao.search.run import load_predictors, search_space_of

    if state.predictors is None:
        config = search_config(state)
        space = search_space_of(config)
        state.predictors = (space, load_predictors(config.profiles, space))
    return state.predictors


def run_supernet(state: OptimizeState) -> dict[str, Any]:
    """Train the supernet from the fine-tuned teacher (knowledge distillation, sandwich rule, budget focus)."""
    from canao.search.candidates import Candidate
    from canao.search.run import ensure_supernet

    space, predictors = _predictors(state)

    def latency(candidate: Candidate) -> float:
        return predictors[candidate.precision].predict_ms(candidate.spec, candidate.seq_len)

    path = ensure_supernet(
        search_config(state),
        space,
        latency,
        lambda _s, d, t, v: state.report("supernet", "" if v is None else f"{v:.4f}", d, t),
    )
    return {"model": str(path / "model"), "budget_ms": budget_ms(state)[0]}


def run_search(state: OptimizeState) -> dict[str, Any]:
    """The controller's search under the budget, the front measured on the device, and the choice. When no
    member can meet the budget: the binding constraint, and the best-effort front of a search under the
    smallest budget the space can meet (no artifact follows)."""
    from dataclasses import replace

    from canao.search.candidates import Candidate
    from canao.search.loop import BudgetInfeasible
    from canao.search.run import search_run

    budget, rule = budget_ms(state)
    config = search_config(state)
    out: dict[str, Any] = {"budget_ms": budget, "budget_rule": rule, "chosen": None}
    try:
        result = search_run(config, lambda stage, d, t, v: state.report("search", stage, d, t))
    except BudgetInfeasible as err:
        space, predictors = _predictors(state)
        smallest = space.smallest()
        floor = min(predictors[p].predict_ms(smallest.spec, smallest.seq_len) for p in space.precisions)
        relaxed = replace(config, out=config.out / "best-effort", latency_ms=BEST_EFFORT_SLACK * floor)
        state.report("search", f"best effort under {relaxed.latency_ms:.2f} ms", 0, 1)
        result = search_run(relaxed, lambda stage, d, t, v: state.report("search", f"best effort {stage}", d, t))
        out["binding"] = str(err)
        out["best_effort_budget_ms"] = relaxed.latency_ms
    out.update(
        search_json=str(result.run_dir / "search.json"),
        pareto_png=str(result.run_dir / "pareto.png"),
        evaluations=len(result.search.trials),
    )
    if "binding" not in out and result.best is not None:
        out["chosen"] = result.best.to_dict()
        out["chosen_describe"] = Candidate.from_dict(out["chosen"]).describe()
    elif "binding" not in out:
        out["binding"] = f"no evaluated member is predicted within {budget:.2f} ms; see the front"
    return out


def supernet_key(state: OptimizeState) -> dict[str, Any]:
    """What the supernet's weights depend on: its schedule and the budget its sampling focuses on (not the
    search's own settings, so a longer search reuses the trained supernet)."""
    c, e = state.config, state.config.effort
    return {"budget": c.latency_ms, "supernet": [e.supernet_epochs, e.supernet_steps]}


def search_key(state: OptimizeState) -> dict[str, Any]:
    e = state.config.effort
    return {**supernet_key(state), "evaluations": e.evaluations, "eval_examples": e.eval_examples}


# ------------------------------------------------------------------ distill
def chosen_candidate(state: OptimizeState) -> Any:
    from canao.search.candidates import Candidate

    chosen = state.outputs["search"].get("chosen")
    return Candidate.from_dict(chosen) if chosen else None


def run_distill(state: OptimizeState) -> dict[str, Any]:
    """Distill the chosen architecture from the teacher in two stages, starting from its supernet slice or
    pruned from the teacher (`student_init`), on the training set plus `augment` variants per sentence."""
    from canao.train.distill import DistillConfig, distill
    from canao.train.finetune import FinetuneConfig

    c, e = state.config, state.config.effort
    candidate = chosen_candidate(state)
    if candidate is None:
        return {"skipped": "no architecture met the budget (see the search stage)"}
    train, dev = state.files()
    config = DistillConfig(
        FinetuneConfig(
            c.task,
            state.dir("distill"),
            epochs=e.distill_epochs,
            batch_size=32,
            lr=1e-4,
            max_length=c.seq_len,
            max_steps=e.distill_steps,
            seed=c.seed,
            length_buckets=LENGTH_BUCKETS,
            precision=state.train_precision(),
            save_every_s=e.checkpoint_every_s,
        ),
        value_weight=1.0,
        intermediate_epochs=e.intermediate_epochs,
        init="prune" if c.student_init == "prune" else "slice",
        augment_copies=c.augment,
    )
    supernet = Path(state.outputs["supernet"]["model"])
    result = distill(
        config,
        Path(state.outputs["teacher"]["model"]),
        candidate.spec,
        train,
        dev,
        progress=lambda s, t, loss: state.report("distill", f"{loss:.4f}", s, t),
        slice_from=supernet if c.student_init == "supernet" else None,
    )
    return {
        "model": str(Path(config.train.output_dir) / "model"),
        "metrics": result.metrics,
        "steps": result.steps,
        "student_init": c.student_init,
        "augment": c.augment,
    }


def distill_key(state: OptimizeState) -> dict[str, Any]:
    c, e = state.config, state.config.effort
    key: dict[str, Any] = {"epochs": [e.intermediate_epochs, e.distill_epochs], "steps": e.distill_steps}
    # Only a recipe other than the first one enters the key, so runs made before these options are reused.
    if c.student_init != "supernet":
        key["student_init"] = c.student_init
    if c.augment:
        key["augment"] = c.augment
    return key


# ------------------------------------------------------------------ compile
def compiled_precisions(state: OptimizeState) -> tuple[str, ...]:
    """The chosen precision, and with --precision auto every searched one (the evaluation picks)."""
    candidate = chosen_candidate(state)
    searched = tuple(state.outputs["profile"]["profiles"])
    if state.config.precision != "auto":
        return searched
    return tuple(dict.fromkeys([candidate.precision.value, *searched]))


def build_options(state: OptimizeState, precision: str, tune_budget_s: float) -> Any:
    from canao.compiler.build import BuildOptions

    c = state.config
    return BuildOptions(
        simd=state.executor().simd if c.device != "local" else "auto",
        precision=Precision.parse(precision),
        threads=c.threads,
        tune_budget_s=tune_budget_s if c.device == "local" else 0.0,
        tune_seq_len=c.seq_len,
        compiler=c.compiler,
    )


def run_compile(state: OptimizeState) -> dict[str, Any]:
    """Compile (fuse, tune, generate code) the distilled student in each precision considered."""
    from canao.compiler.checkpoint import compile_checkpoint

    if chosen_candidate(state) is None:
        return {"skipped": "no architecture met the budget"}
    student = Path(state.outputs["distill"]["model"])
    artifacts = {}
    precisions = compiled_precisions(state)
    for i, precision in enumerate(precisions):
        state.report("compile", precision, i, len(precisions))
        target = state.dir("compile") / precision
        compile_checkpoint(student, target, build_options(state, precision, state.config.effort.tune_budget_s))
        artifacts[precision] = str(target)
    return {"artifacts": artifacts}


def compile_key(state: OptimizeState) -> dict[str, Any]:
    return {"tune_budget_s": state.config.effort.tune_budget_s}


# ------------------------------------------------------------------ evaluate
def pick_precision(
    rows: dict[str, dict[str, Any]], reference: float, tolerance: float, budget: float
) -> tuple[Optional[str], str]:
    """The fastest precision whose accuracy is within `tolerance` points of `reference` (the fp32 PyTorch
    student) and whose measured latency is within the budget; else the fastest within the tolerance."""
    good = [p for p, r in rows.items() if r.get("metric") is not None and reference - r["metric"] <= tolerance]
    if not good:
        return None, f"no precision is within {tolerance} points of the fp32 student"
    fits = [p for p in good if rows[p]["measured_ms"] <= budget]
    fastest = min(fits or good, key=lambda p: rows[p]["measured_ms"])
    if fits:
        return fastest, f"fastest precision within {tolerance} points of the fp32 student and within the budget"
    return fastest, f"fastest precision within {tolerance} points of the fp32 student; it misses the budget"


def run_evaluate(state: OptimizeState) -> dict[str, Any]:
    """Official metrics of the compiled student per precision, latencies of teacher and student on PyTorch,
    ONNX Runtime (when installed) and canao in one run, and the precision chosen."""
    from canao.optimize.compare import measure_side_by_side
    from canao.train.evaluate import evaluate_checkpoint

    c = state.config
    if chosen_candidate(state) is None:
        return {"skipped": "no architecture met the budget"}
    _, dev = state.files()
    student = Path(state.outputs["distill"]["model"])
    artifacts = state.outputs["compile"]["artifacts"]
    rows: dict[str, dict[str, Any]] = {}
    for i, precision in enumerate(artifacts):
        state.report("evaluate", f"scoring {precision}", i, len(artifacts) + 1)
        metrics, _ = evaluate_checkpoint(
            student, c.task, dev, max_length=c.seq_len, runtime="compiled", precision=precision, threads=c.threads
        )
        rows[precision] = {"metrics": metrics, "metric": metrics.get(c.metric)}
    state.report("evaluate", "timing", len(artifacts), len(artifacts) + 1)
    timing = measure_side_by_side(state, Path(state.outputs["teacher"]["model"]), artifacts)
    for precision in rows:
        rows[precision]["measured_ms"] = timing["canao"]["student"][precision]
        rows[precision]["predicted_ms"] = timing["predicted"]["student"].get(precision)
    reference = state.outputs["distill"]["metrics"].get(c.metric)
    budget = state.outputs["search"]["budget_ms"]
    chosen, rule = pick_precision(rows, reference, c.tolerance, budget)
    per_op = per_op_before_after(state, chosen, artifacts[chosen]) if chosen and c.device == "local" else None
    return {
        "precisions": rows,
        "chosen_precision": chosen,
        "precision_rule": rule,
        "timing": timing,
        "per_op": per_op,
    }


def per_op_before_after(state: OptimizeState, precision: str, artifact: str) -> dict[str, Any]:
    """Per-op time of the chosen build with and without the optional fusions (QKV merge, GEMM epilogues,
    add+LayerNorm), ops of one kind summed over the layers."""
    from dataclasses import asdict

    from canao.compiler.artifact import read_artifact_source
    from canao.report.per_op import group_ops, per_op_times

    c = state.config
    lowered = read_artifact_source(artifact).lowered()
    options = build_options(state, precision, 0.0)
    out = {}
    for name, fuse in (("fused", True), ("unfused", False)):
        groups = group_ops(per_op_times(lowered, options, c.seq_len, runs=10, fuse=fuse))
        out[name] = [{**asdict(g), "gflops_per_s": g.gflops_per_s} for g in groups]
    return out


def evaluate_key(state: OptimizeState) -> dict[str, Any]:
    return {"tolerance": state.config.tolerance, "runs": state.config.effort.timing_runs}


# ----------------------------------------------------------------- artifact
def run_package(state: OptimizeState) -> dict[str, Any]:
    """Copy the chosen compiled artifact to RUN/artifact (via a temporary directory, then one rename)."""
    evaluation = state.outputs["evaluate"]
    precision = evaluation.get("chosen_precision")
    if not precision:
        return {"skipped": evaluation.get("skipped") or evaluation.get("precision_rule")}
    source = Path(state.outputs["compile"]["artifacts"][precision])
    target = state.out / "artifact"
    staging = state.out / ".artifact.tmp"
    if staging.exists():
        shutil.rmtree(staging)  # our own half-written copy from a killed run
    shutil.copytree(source, staging, symlinks=True)
    if target.exists():
        from canao.optimize.pipeline import supersede

        supersede(state, "artifact")
    os.replace(staging, target)
    return {"artifact": str(target), "precision": precision}


STAGES: list[Stage] = [
    Stage("teacher", run_teacher, teacher_key, "fine-tune the teacher"),
    Stage("profile", run_profile, profile_key, "profile the device"),
    Stage("supernet", run_supernet, supernet_key, "train the supernet"),
    Stage("search", run_search, search_key, "search under the budget"),
    Stage("distill", run_distill, distill_key, "distill the chosen architecture"),
    Stage("compile", run_compile, compile_key, "compile and tune"),
    Stage("evaluate", run_evaluate, evaluate_key, "evaluate and time"),
    Stage("package", run_package, lambda state: {}, "write RUN/artifact"),
]
