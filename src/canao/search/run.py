"""`canao search`: supernet, then controller search under a latency budget, then the front measured on the device.

Run directory::

  RUN/supernet/          the supernet's training run (checkpoints; model/ when trained), reused when present
  RUN/trials.sqlite      every evaluated candidate; a killed search resumes from it
  RUN/best_arch.json     the chosen ArchSpec (most accurate under the budget)
  RUN/search.json        settings, the chosen candidate, the Pareto front (predicted, and measured where asked)
  RUN/pareto.png         accuracy vs predicted latency: trials, front, budget line, choice

Example::

    result = search_run(SearchRunConfig(teacher=Path("teacher-sst2"), task="sst2", train=..., dev=...,
                                        profiles=(Path("profile.json"),), latency_ms=12.0, out=Path("run")))
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from canao.compiler.layout import Precision
from canao.errors import SpecError
from canao.latency.predictor import LatencyPredictor
from canao.latency.profile import DeviceProfile
from canao.search.candidates import Candidate, CandidateSpace, load_candidate_space
from canao.search.controllers import DEFAULT_CONTROLLER
from canao.search.loop import SearchConfig, SearchResult, run_search
from canao.search.trials import Trial
from canao.storage import exclusive_per, write_json_atomically

log = logging.getLogger(__name__)
SUPERNET_LENGTH_BUCKETS = 50  # batches of similar length: padding nearly vanishes (train/finetune.py)
StageProgress = Callable[[str, int, int, Optional[float]], None]  # (stage, done, total, loss or best reward)


@dataclass(frozen=True)
class SearchRunConfig:
    teacher: Path  # checkpoint fine-tuned on the task: the supernet starts from it and distils from it
    task: str
    train: Path
    dev: Path  # held-out data the inherited accuracy is measured on (never the test set)
    profiles: tuple[Path, ...]  # device profiles, one per precision searched
    latency_ms: float
    out: Path
    space: Optional[Path] = None  # CandidateSpace JSON (default: the encoder space around the teacher)
    precisions: tuple[str, ...] = ()  # override the space's precisions
    controller: str = DEFAULT_CONTROLLER
    evaluations: int = 100
    seed: int = 0
    batch: int = 4
    cost: str = "latency"  # or "flops": the FLOPs proxy, same budget as a fraction of the teacher
    supernet_epochs: float = 1.0
    supernet_steps: Optional[int] = None
    supernet_batch_size: int = 32
    supernet_lr: float = 2e-4
    # Random members of the supernet's sandwich are drawn among those predicted within this multiple of the
    # budget (budget-aware sampling, search/supernet.py); 0: uniformly over the whole space.
    supernet_focus: float = 1.5
    max_length: int = 128
    eval_examples: Optional[int] = None  # score members on the first N dev examples (None: all)
    measure_front: bool = True  # compile and time the front's members on the profiles' device
    device: Optional[str] = None  # how to reach the profiles' device when it is not this machine (a {cmd} template)
    # The choice keeps predicted + margin x the predictor's uncertainty under the budget when the front could not
    # be measured; measured members are chosen by their measured latency.
    latency_margin: float = 1.0
    workers: int = 1  # > 1: score each round's members on this many Ray actors (results identical)
    ray_address: Optional[str] = None  # an existing Ray cluster instead of a local one
    threads: int = 2  # torch threads of the serial scorer
    supernet_dir: Optional[Path] = None  # where the supernet is trained / found (default: out/supernet)
    train_precision: str = "fp32"  # supernet training autocast (train/finetune.py: train_precision)
    save_every_s: float = 300.0  # supernet checkpoints at most this many seconds apart (what a kill can lose)

    def __post_init__(self) -> None:
        """The search's own settings (controller, cost, budget, counts) are checked now, not after minutes of
        supernet training; the FLOPs budget is derived later, so a stand-in validates the rest."""
        flops = 1.0 if self.cost == "flops" else None
        SearchConfig(self.latency_ms, self.controller, self.evaluations, self.seed, self.batch, self.cost, flops)


@dataclass(frozen=True)
class SearchRunResult:
    search: SearchResult
    best: Optional[Candidate]
    measured_ms: dict[str, float]  # candidate key -> measured compiled latency (front members, when measured)
    run_dir: Path


def load_predictors(paths: Sequence[Path], space: CandidateSpace) -> dict[Precision, LatencyPredictor]:
    """One predictor per precision of the space, each checked to cover the space's extremes."""
    predictors: dict[Precision, LatencyPredictor] = {}
    for path in paths:
        profile = DeviceProfile.load(path)
        predictors[Precision.parse(profile.precision)] = LatencyPredictor(profile)
    missing = [p.value for p in space.precisions if p not in predictors]
    if missing:
        raise SpecError(
            f"no device profile for precision(s) {missing}; run `canao profile --precision ...` and pass "
            "each with --profile."
        )
    for precision in space.precisions:
        for candidate in (
            Candidate(space.arch.largest(), precision, space.seq_lens[-1]),
            Candidate(space.smallest().spec, precision, space.seq_lens[0]),
        ):
            try:
                predictors[precision].predict_ms(candidate.spec, candidate.seq_len)
            except (SpecError, ValueError) as err:
                raise SpecError(
                    f"the {precision.value} device profile does not cover the search space ({err}); "
                    "profile this space with `canao profile --space`."
                ) from None
    return predictors


def flops_budget(space: CandidateSpace, latency: Callable[[Candidate], float], latency_ms: float) -> float:
    """The latency budget as the same fraction of the largest member's (the teacher's) GFLOPs."""
    teacher = Candidate(space.arch.largest(), space.precisions[0], space.seq_lens[0])
    return teacher.spec.flops(teacher.seq_len) / 1e9 * latency_ms / latency(teacher)


def ensure_supernet(
    config: SearchRunConfig,
    space: CandidateSpace,
    latency: Callable[[Candidate], float],
    progress: Optional[StageProgress] = None,
) -> Path:
    """The supernet's directory, trained there first unless its model is already saved (a killed training
    resumes from its checkpoint)."""
    from canao.search.supernet import SupernetConfig, check_space_fits, train_supernet
    from canao.train.finetune import FinetuneConfig, load_for_task

    teacher = load_for_task(config.teacher, config.task)
    check_space_fits(space, teacher.spec)
    supernet_dir = Path(config.supernet_dir or Path(config.out) / "supernet")
    if (supernet_dir / "model" / "config.json").exists():
        return supernet_dir
    train = FinetuneConfig(
        config.task,
        supernet_dir,
        epochs=config.supernet_epochs,
        batch_size=config.supernet_batch_size,
        lr=config.supernet_lr,
        max_length=config.max_length,
        max_steps=config.supernet_steps,
        seed=config.seed,
        length_buckets=SUPERNET_LENGTH_BUCKETS,
        precision=config.train_precision,
        save_every_s=config.save_every_s,
    )
    focus = config.supernet_focus * config.latency_ms if config.supernet_focus > 0 else None
    train_supernet(
        SupernetConfig(train, focus_ms=focus),
        space,
        config.teacher,
        config.train,
        progress=lambda s, t, loss: progress("supernet", s, t, loss) if progress else None,
        latency=lambda spec: min(latency(Candidate(spec, p, t)) for p in space.precisions for t in space.seq_lens),
    )
    return supernet_dir


def search_space_of(config: SearchRunConfig) -> CandidateSpace:
    """The run's candidate space: the space file (default: around the teacher) with the precisions override."""
    space = load_candidate_space(config.space)
    if config.precisions:
        space = replace(space, precisions=tuple(Precision.parse(p) for p in config.precisions))
    return space


@exclusive_per("config", "search run", lambda config: config.out)
def search_run(config: SearchRunConfig, progress: Optional[StageProgress] = None) -> SearchRunResult:
    """Train (or reuse) the supernet, search, write the outputs; a killed run resumes where it stopped. One
    process at a time per output directory."""
    space = search_space_of(config)
    predictors = load_predictors(config.profiles, space)

    def latency(candidate: Candidate) -> float:
        return predictors[candidate.precision].predict_ms(candidate.spec, candidate.seq_len)

    supernet_dir = ensure_supernet(config, space, latency, progress)
    run_dir = Path(config.out)
    evaluate = _evaluator(config, supernet_dir)

    budget = flops_budget(space, latency, config.latency_ms) if config.cost == "flops" else None
    search = SearchConfig(
        config.latency_ms, config.controller, config.evaluations, config.seed, config.batch, config.cost, budget
    )
    settings = {
        "teacher": str(config.teacher),
        "task": config.task,
        "dev": str(config.dev),
        "eval_examples": config.eval_examples,
        "profiles": [str(p) for p in config.profiles],
    }

    def breakdown(candidate: Candidate) -> dict[str, float]:
        return predictors[candidate.precision].breakdown_ms(candidate.spec, candidate.seq_len)

    result = run_search(
        search,
        space,
        evaluate,
        latency,
        run_dir / "trials.sqlite",
        settings=settings,
        progress=lambda d, t, r: progress("search", d, t, r) if progress else None,
        breakdown=breakdown,
    )
    measured = _measure(result.front, predictors, config) if config.measure_front else {}

    def margin(candidate: Candidate) -> float:
        return config.latency_margin * predictors[candidate.precision].uncertainty_ms(candidate.spec, candidate.seq_len)

    if config.cost == "latency":
        best, rule = choose(result, config.latency_ms, measured, margin)
    else:
        best = Candidate.from_dict(result.best.candidate) if result.best else None
        rule = "most accurate under the FLOPs budget"
    _write_outputs(run_dir, config, search, result, best, measured, rule)
    return SearchRunResult(result, best, measured, run_dir)


def choose(
    result: SearchResult, budget_ms: float, measured: dict[str, float], margin_ms: Callable[[Candidate], float]
) -> tuple[Optional[Candidate], str]:
    """The architecture to hand on, and why: the most accurate front member whose measured latency is within
    the budget; unmeasured, the most accurate whose prediction plus the margin is; else the search's best."""
    ranked = sorted(result.front, key=lambda t: -t.accuracy)
    candidates = [Candidate.from_dict(t.candidate) for t in ranked]
    if measured:
        fits = [c for c in candidates if c.key() in measured and measured[c.key()] <= budget_ms]
        if fits:
            return fits[0], "most accurate front member measured within the budget"
        log.warning("no front member measured within the budget; choosing by prediction")
    for trial, candidate in zip(ranked, candidates):
        if trial.latency_ms + margin_ms(candidate) <= budget_ms:
            return candidate, "most accurate front member predicted within the budget with the uncertainty margin"
    if result.best is None:
        return None, "no member within the budget"
    return Candidate.from_dict(result.best.candidate), "most accurate predicted within the budget (margin not met)"


def _evaluator(config: SearchRunConfig, supernet_dir: Path) -> Callable[[Sequence[Candidate]], list[float]]:
    """Inherited accuracy of a round's members: here, or on `config.workers` Ray actors (same results)."""
    if config.workers > 1 or config.ray_address:
        from canao.search.workers import ray_evaluator

        return ray_evaluator(
            supernet_dir,
            config.task,
            config.dev,
            max_length=config.max_length,
            eval_examples=config.eval_examples,
            workers=config.workers,
            ray_address=config.ray_address,
        )
    from canao.search.workers import MemberScorer

    scorer = MemberScorer(
        str(supernet_dir), config.task, str(config.dev), config.max_length, config.eval_examples, threads=config.threads
    )
    return lambda batch: [scorer.score(c.to_dict()) for c in batch]


def _measure(
    front: Sequence[Trial], predictors: dict[Precision, LatencyPredictor], config: SearchRunConfig
) -> dict[str, float]:
    """Compile and time the front's members on the profiles' device (this machine, or `config.device`)."""
    from canao.latency.predictor import measuring_executor
    from canao.latency.profile import ProfileError, measure_model

    executors = {}
    for precision, predictor in predictors.items():
        try:
            executors[precision] = measuring_executor(predictor.profile, config.device)
        except ProfileError as err:
            if config.device is not None:
                raise
            log.info("the front is not measured: %s", err)
            return {}
    measured = {}
    for trial in front:
        c = Candidate.from_dict(trial.candidate)
        timing = measure_model(c.spec, executors[c.precision], c.seq_len, precision=c.precision.value)
        measured[c.key()] = timing.median_ms
    return measured


def _write_outputs(
    run_dir: Path,
    config: SearchRunConfig,
    search: SearchConfig,
    result: SearchResult,
    best: Optional[Candidate],
    measured: dict[str, float],
    rule: str,
) -> None:
    def row(trial: Trial) -> dict[str, Any]:
        key = Candidate.from_dict(trial.candidate).key()
        out = {**asdict(trial), "decisions": list(trial.decisions), "measured_ms": measured.get(key)}
        if key in measured:
            out["predictor_error_pct"] = 100 * (trial.latency_ms - measured[key]) / measured[key]
        return out

    front = [row(t) for t in result.front]
    summary: dict[str, Any] = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "search": asdict(search),
        "evaluations": len(result.trials),
        "resumed_trials": result.resumed_trials,
        "best": row(result.best) if result.best else None,
        "chosen": best.to_dict() if best else None,
        "choice_rule": rule,
        "front": front,
    }
    if measured:
        errors = [abs(r["predictor_error_pct"]) for r in front if r.get("predictor_error_pct") is not None]
        summary["predictor_mape_on_front_pct"] = float(np.mean(errors))
    write_json_atomically(run_dir / "search.json", json.loads(json.dumps(summary, default=str)))
    if best is not None:
        write_json_atomically(run_dir / "best_arch.json", best.spec.to_dict())
    plot_search(result, config.latency_ms, run_dir / "pareto.png")


def plot_search(result: SearchResult, latency_ms: float, path: Path) -> Path:
    """Accuracy vs predicted latency of every trial, the Pareto front, the budget and the choice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.scatter(
        [t.latency_ms for t in result.trials],
        [t.accuracy for t in result.trials],
        s=10,
        color="#9e9e9e",
        label="evaluated",
    )
    ax.plot(
        [t.latency_ms for t in result.front],
        [t.accuracy for t in result.front],
        "-o",
        color="#3b7dd8",
        markersize=4,
        label="Pareto front",
    )
    ax.axvline(latency_ms, color="#d8893b", linestyle="--", label=f"budget {latency_ms:g} ms")
    if result.best is not None:
        ax.scatter(
            [result.best.latency_ms],
            [result.best.accuracy],
            s=80,
            marker="*",
            color="#1a9e5c",
            zorder=5,
            label="chosen",
        )
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("accuracy with inherited weights")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
