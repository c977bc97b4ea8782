"""Accuracy benchmark: fine-tune the MiniLM teacher on SST-2 and SQuAD, distill students, ship the QA model.

Stages (run one or all; each appends its figures, command and wall time to
--results as JSON lines; every training run resumes from its directory under --work):
  sst2     fine-tune the teacher on the full SST-2 train set, report dev accuracy (target >= 89%)
  squad    the older article split of ../shared/data/squad/dev-v1.1-part-a.json (first 24 articles to
           train, the other 12 to score); kept for comparison with earlier figures
  squad-teacher  fine-tune the teacher on the full SQuAD v1.1 training set (the reconstructed
           train-v1.1.reconstructed.json.gz; 1 epoch, 384 tokens, stride 128, length-bucketed batches)
           and report EM/F1 on all 36 articles (8,123 questions) of dev part A; --squad-teacher-run names
           the run directory (a run started by `canao finetune` with the same settings is picked up)
  squad-teacher-bundled  make the --squad-teacher-run directory from the bundled QA model when it is the
           teacher (int8-compressed weights, dequantized on load): students without the hours of fine-tuning
  distill  distill encoder L4 H256 (8 heads x 32, FFN 1024; a slice of the teacher) from the SST-2
           teacher, report its dev accuracy and the gap
  sst2-students, squad-students  distill each student of STUDENTS (or --students NAME,...) from the task's
           teacher in two stages (TinyBERT): --intermediate-epochs of hidden states, attention and MiniLM
           value relations, then --student-epochs of logits at temperature 2 and labels; then time the
           teacher and every student compiled (fp32, 128 or 384 tokens) in one run; --init prune starts
           each from the most important heads and FFN units of evenly spread teacher layers (or
           --prune-layers; canao.models.prune), --augment N
           adds N neighbour-replaced variants of every SST-2 sentence; a run's directory and name carry both;
           --more-epochs N then trains each finished student N more epochs in the prediction stage (a warm
           restart at half the learning rate, into <run>-moreN): a longer schedule added in a later sitting
  bundle   compress the SQuAD student that meets 1/4 of the teacher's latency within 2 F1 of it, best F1 (or
           --bundle-from DIR) to int8 weights, score the compressed checkpoint on dev part A (PyTorch and
           compiled), time it, and write it with its model card to canao/models/pretrained/squad-minilm-qa
  precision  score the models the stages above left in --work with PyTorch and compiled fp32, bf16 and
           int8 (the deployed runtimes), and how many predictions each compiled one shares with PyTorch

    .venv/bin/python benchmarks/accuracy.py --stages sst2,distill --results docs/accuracy.jsonl
    .venv/bin/python benchmarks/accuracy.py --stages squad-teacher,squad-students,bundle --work /work/runs/acc
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from canao.arch import ArchSpec, LayerSpec
from canao.data.squad import read_squad
from canao.models.teacher import BUNDLED_MODELS, PRETRAINED_DIR
from canao.storage import write_text_atomically
from canao.train.distill import DistillConfig, default_prune_layers, distill, prediction_stage
from canao.train.finetune import FinetuneConfig, TrainResult, finetune, train_precision
from canao.train.progress import loss_text

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD_TRAIN = SHARED / "squad/train-v1.1.reconstructed.json.gz"
SQUAD_DEV = SHARED / "squad/dev-v1.1-part-a.json"
BUNDLED_QA = PRETRAINED_DIR / BUNDLED_MODELS["qa"]
BUNDLE_LIMIT_BYTES = 25_000_000
TASK_LENGTH = {"sst2": 128, "squad": 384}
TASK_METRIC = {"sst2": "accuracy", "squad": "f1"}  # the dev metric a student's gap is measured in


def _encoder(hidden: int, layers: list[tuple[int, int]]) -> ArchSpec:
    """An encoder of the teacher's vocabulary and positions with (heads of 32, FFN) per layer."""
    return ArchSpec("encoder", 30522, 512, hidden, tuple(LayerSpec(a, 32, f) for a, f in layers))


STUDENT = _encoder(256, [(8, 1024)] * 4)
# Students for the accuracy/latency table. Predicted at 128 tokens on the AVX2 EPYC (teacher 39.6 ms):
# l4-h256-a4 8.9 ms, l3-h256-a8 9.8 ms, searched (the search benchmark's REINFORCE pick) 6.4 ms, and
# l4-h256-a8 (the older student) 12.9 ms, just above a quarter of the teacher.
STUDENTS = {
    "l4-h256-a4-f768": _encoder(256, [(4, 768)] * 4),
    "l3-h256-a8-f1024": _encoder(256, [(8, 1024)] * 3),
    "searched-l2-h384": _encoder(384, [(6, 384), (6, 768)]),
    "l4-h256-a8-f1024": STUDENT,
    # Full-width students for pruning (--init prune keeps the teacher's hidden size and embeddings). Measured
    # on the AMX Xeon, compiled fp32 at 128 tokens vs the teacher's 11.1 ms: 0.22x and 0.21x.
    "l3-h384-a4-f384": _encoder(384, [(4, 384)] * 3),
    "l2-h384-a8-f512": _encoder(384, [(8, 512)] * 2),
    # The next SQuAD candidate: one more layer than l3-h384-a4-f384 within a quarter of the teacher at 384 tokens
    # (Zen 4, compiled fp32: 11.8 vs 53.1 ms, 0.22x; l3-h384-a4-f384 0.17x, l4-h384-a4-f512 0.25x).
    "l4-h384-a4-f384": _encoder(384, [(4, 384)] * 4),
    # Deeper and thinner: every teacher layer kept (on SST-2, halving every layer's width cost nothing while
    # dropping layers did), paid for with heads and FFN units. Zen 4, compiled fp32 at 384 tokens vs the
    # teacher's 51.2 ms: l6-h384-a2-f256 10.5 ms (0.21x), l5-h384-a4-f256 12.3 ms (0.24x); l6 with 3 heads and
    # 256 units, 2 heads and 384 units or 4 heads and 192 units is over a quarter (0.27x-0.28x).
    "l6-h384-a2-f256": _encoder(384, [(2, 256)] * 6),
    "l5-h384-a4-f256": _encoder(384, [(4, 256)] * 5),
    # On SQuAD the thin l6 (F1 71.71) lost 2.5 F1 to l4-h384-a4-f384 (74.17) at the same latency: width per layer
    # carries more there. The widest four layers at about a quarter (Zen 4, 384 tokens: 0.25x, on the line).
    "l4-h384-a4-f512": _encoder(384, [(4, 512)] * 4),
    # Larger pruned students for the accuracy/latency curve (above a quarter of the teacher's latency).
    "l4-h384-a6-f768": _encoder(384, [(6, 768)] * 4),
    "l6-h384-a6-f768": _encoder(384, [(6, 768)] * 6),
}


def _log(step: int, total: int, loss: float) -> None:
    """A progress line every 100 steps. A NaN loss marks a pass that trains nothing (the teacher's logits
    computed for the cache), not a diverged run: it is said so."""
    if step % 100 == 0 or step == total:
        what = loss_text(loss) or "(teacher outputs for the cache, no training)"
        print(f"  step {step}/{total} {what}", flush=True)


EARLIER_MACHINE = "AMD EPYC"  # where the records written before `machine` was recorded were measured


def _record(results: Path, entry: dict) -> None:
    from canao.device import describe_machine

    entry = {**entry, "machine": entry.get("machine") or describe_machine().cpu_model}
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry, indent=2), flush=True)


def stage_sst2(args) -> None:
    start = time.perf_counter()
    config = FinetuneConfig(
        "sst2",
        args.work / "sst2",
        epochs=args.epochs,
        batch_size=32,
        lr=5e-5,
        max_length=128,
        save_every=500,
        length_buckets=50,
        precision=train_precision(args.train_precision),
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
            "train_precision": config.precision,
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
    teacher = _teacher_metrics(args, "sst2")
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


def _squad_teacher_config(args) -> FinetuneConfig:
    return FinetuneConfig(
        "squad",
        args.squad_teacher_run or args.work / "squad-teacher",
        epochs=args.squad_epochs,
        batch_size=32,
        lr=1e-4,
        max_length=384,
        doc_stride=128,
        length_buckets=50,
        precision=train_precision(args.train_precision),
    )


def stage_squad_teacher(args) -> None:
    start = time.perf_counter()
    config = _squad_teacher_config(args)
    if (Path(config.output_dir) / BUNDLED_TEACHER_MARK).exists():
        raise SystemExit(
            f"{config.output_dir} was made from the bundled model (squad-teacher-bundled), not trained here: "
            "its figures are in the bundle stage's record; pass another --squad-teacher-run to train a teacher."
        )
    finished = Path(config.output_dir) / "metrics.json"
    if finished.exists() and (Path(config.output_dir) / "model" / "config.json").exists():
        # `canao finetune` finished this run and scored it already: take its figures, do not score again
        state = torch.load(Path(config.output_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
        result = TrainResult(int(state["step"]), float(state["history"][-1]["loss"]), json.loads(finished.read_text()))
    else:
        result = finetune(config, None, SQUAD_TRAIN, SQUAD_DEV, progress=_log)
    _record(
        args.results,
        {
            "stage": "squad-teacher",
            "model": "all-MiniLM-L6-v2",
            "train": f"{SQUAD_TRAIN.name} (87,599 questions)",
            "dev": f"{SQUAD_DEV.name} (36 articles, 8,123 questions)",
            "metrics": result.metrics,
            "steps": result.steps,
            "epochs": args.squad_epochs,
            "settings": f"batch {config.batch_size}, lr {config.lr:g}, {config.max_length} tokens, stride "
            f"{config.doc_stride}, --length-buckets {config.length_buckets}, --precision {config.precision} "
            "(this invocation)",
            "run": str(config.output_dir),
            "wall_min_this_invocation": (time.perf_counter() - start) / 60,
        },
    )


def compiled_latencies(specs: list[ArchSpec], seq_len: int, threads: int, rounds: int = 3) -> list[float]:
    """Compiled fp32 latency (ms) of each spec on this CPU, alternating over `rounds` (fastest round's median)."""
    from canao.latency.device import make_executor
    from canao.latency.profile import measure_model

    executor = make_executor("local")
    best = [float("inf")] * len(specs)
    for _ in range(rounds):
        for i, spec in enumerate(specs):
            best[i] = min(best[i], measure_model(spec, executor, seq_len, threads=threads).median_ms)
    return best


BUNDLED_TEACHER_MARK = "bundled.json"


def stage_squad_teacher_bundled(args) -> None:
    """Make the SQuAD teacher's run directory (--squad-teacher-run) from the bundled QA model, when the bundle
    is that teacher: fine-tuning it on the full training set takes hours on 2 cores, and the bundle keeps its
    weights int8-compressed (F1 within 0.2 of the float32 model), so the students stage can run on a fresh
    machine. Its metrics.json is the shipped model's compiled score, the figure students are then measured
    against. Nothing is overwritten: another existing run directory is refused, one made here is reused."""
    import shutil

    run = Path(_squad_teacher_config(args).output_dir)
    summary = json.loads((BUNDLED_QA / "metrics.json").read_text())
    scores = summary.get("scores", {})
    shipped = next((m for key, m in scores.items() if key.startswith("int8") and key.endswith("|compiled")), None)
    if shipped is None or not any(key.startswith("float32 teacher") for key in scores):
        raise SystemExit(
            f"{BUNDLED_QA} does not hold the fine-tuned teacher (its metrics.json has no teacher score): train "
            "the teacher with --stages squad-teacher instead."
        )
    if (run / BUNDLED_TEACHER_MARK).exists():  # made by an earlier call: the stage list can be rerun as is
        print(f"{run}: made from the bundle already")
        return
    if run.exists():
        raise SystemExit(f"{run} exists already: pass another --squad-teacher-run (nothing is overwritten).")
    staging = run.with_name(run.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(BUNDLED_QA, staging / "model")
    (staging / "metrics.json").write_text(json.dumps(shipped, indent=1))
    card = " ".join((BUNDLED_QA / "README.md").read_text().split())  # one line: the card wraps its sentences
    settings = re.search(r"fine-tuned on the SQuAD v1\.1 training set: (.+?) training\.", card)
    origin = {
        "bundle": str(BUNDLED_QA),
        "trained_as": summary.get("source"),
        "metrics": "int8-compressed, compiled",
        "teacher_settings": settings.group(1) + " training" if settings else f"as in {BUNDLED_QA}/README.md",
    }
    (staging / BUNDLED_TEACHER_MARK).write_text(json.dumps(origin, indent=1))
    staging.rename(run)
    print(f"{run}: the bundled teacher, F1 {shipped['f1']:.2f} (EM {shipped['exact_match']:.2f})")


def _task_teacher(args, task: str) -> Path:
    return args.work / "sst2" / "model" if task == "sst2" else _squad_teacher_config(args).output_dir / "model"


def _teacher_metrics(args, task: str) -> dict:
    """The task teacher's dev metrics, as its fine-tuning run wrote them beside the model."""
    return json.loads((_task_teacher(args, task).parent / "metrics.json").read_text())


def _students(args, task: str) -> None:
    train, dev = (
        (SHARED / "glue/SST-2/train.tsv", SHARED / "glue/SST-2/dev.tsv")
        if task == "sst2"
        else (
            SQUAD_TRAIN,
            SQUAD_DEV,
        )
    )
    teacher = _task_teacher(args, task)
    teacher_metrics = _teacher_metrics(args, task)
    metric = TASK_METRIC[task]
    names = args.students.split(",") if args.students else list(STUDENTS)
    augment = args.augment if task == "sst2" else 0
    from canao.models.hf import load_pretrained

    teacher_spec = load_pretrained(teacher).spec
    done: dict[str, dict] = {}
    timed: list[ArchSpec] = []
    for name in names:
        layers = _prune_layers(args.prune_layers, STUDENTS[name], teacher_spec) if args.init == "prune" else None
        label = _run_label(name, layers, augment)
        run = args.work / f"{task}-{label}"
        start = time.perf_counter()
        config = DistillConfig(
            FinetuneConfig(
                task,
                run,
                epochs=args.student_epochs,
                batch_size=32,
                lr=1e-4,
                max_length=TASK_LENGTH[task],
                doc_stride=128,
                length_buckets=50,
                precision=train_precision(args.train_precision),
            ),
            value_weight=1.0,
            intermediate_epochs=args.intermediate_epochs,
            augment_copies=augment,
            init=args.init,
            prune_layers=layers,
        )
        recipe = (
            f"{args.intermediate_epochs} epochs intermediate (hidden, attention, values) + "
            f"{args.student_epochs} epochs prediction layer (T=2)"
            + (f", {augment} augmented variants per example" if augment else "")
        )
        finished = (run / "metrics.json").exists() and (run / "model" / "config.json").exists()
        if not (args.more_epochs and finished):  # going on from a finished student needs no rerun of it
            result = distill(config, teacher, STUDENTS[name], train, dev, progress=_log)
            done[label] = result.metrics
            timed.append(STUDENTS[name])
            _record_student(args, task, label, name, result, _start_note(run) + recipe, start, teacher_metrics)
        if args.more_epochs:
            start, label = time.perf_counter(), f"{label}-more{args.more_epochs:g}"
            more = replace(
                prediction_stage(config),
                train=replace(
                    config.train,
                    output_dir=args.work / f"{task}-{label}",
                    epochs=args.more_epochs,
                    lr=MORE_LR,
                ),
                init="slice",
                prune_layers=None,
            )
            result = distill(more, teacher, STUDENTS[name], train, dev, progress=_log, start_from=run / "model")
            done[label] = result.metrics
            timed.append(STUDENTS[name])
            recipe += f" + {args.more_epochs:g} more epochs prediction layer (warm restart, lr {MORE_LR:g})"
            _record_student(args, task, label, name, result, _start_note(run) + recipe, start, teacher_metrics)
    ms = compiled_latencies([teacher_spec] + timed, TASK_LENGTH[task], args.threads)
    _record(
        args.results,
        {
            "stage": f"{task}-latency",
            "seq_len": TASK_LENGTH[task],
            "teacher_ms": ms[0],
            "students": {
                label: {"ms": t, "ratio": t / ms[0], metric: done[label].get(metric)} for label, t in zip(done, ms[1:])
            },
        },
    )


MORE_LR = 5e-5  # --more-epochs: a warm restart at half the first run's peak learning rate


def _record_student(
    args, task: str, label: str, name: str, result: TrainResult, recipe: str, start: float, teacher_metrics: dict
) -> None:
    metric = TASK_METRIC[task]
    _record(
        args.results,
        {
            "stage": f"{task}-student",
            "name": label,
            "student": STUDENTS[name].describe(),
            "metrics": result.metrics,
            "teacher_metric": teacher_metrics.get(metric),
            "gap_points": teacher_metrics.get(metric, float("nan")) - result.metrics.get(metric, float("nan")),
            "recipe": recipe,
            "steps": result.steps,
            "wall_min_this_invocation": (time.perf_counter() - start) / 60,
        },
    )


def _start_note(run: Path) -> str:
    """How a student run started, for the recipe column: the teacher layers a pruned student kept."""
    for metrics in (run / "intermediate" / "metrics.json", run / "metrics.json"):
        if metrics.exists() and "teacher_layers" in (summary := json.loads(metrics.read_text())):
            return f"pruned from the teacher (its layers {summary['teacher_layers']}), "
    return ""


def _prune_layers(given: Optional[str], student: ArchSpec, teacher: ArchSpec) -> tuple[int, ...]:
    """The teacher layers a pruned student keeps: --prune-layers, else those the uniform layer map targets
    (distill's default), so both spellings of one run share its directory."""
    if given:
        return tuple(int(k) for k in given.split(","))
    return default_prune_layers(student.num_layers, teacher.num_layers)


def _run_label(name: str, layers: Optional[tuple[int, ...]], augment: int) -> str:
    """A student run's name (and directory suffix): the STUDENTS name, the teacher layers it was pruned from
    (none: sliced), its augmentation. Runs pruned by the first version (layers chosen by a probe) are the
    directories named `-pruned` without layers."""
    pruned = "-pruned-layers" + "".join(str(k) for k in layers) if layers is not None else ""
    return name + pruned + (f"-aug{augment}" if augment else "")


def stage_sst2_students(args) -> None:
    _students(args, "sst2")


def stage_squad_students(args) -> None:
    _students(args, "squad")


def _bundle_source(args) -> tuple[Path, str]:
    """The SQuAD student to ship: --bundle-from, else the best F1 among those within 1/4 of the teacher's latency
    and BUNDLE_MAX_F1_GAP of its F1 (a student far below the teacher is no default for the QA app)."""
    if args.bundle_from:
        return args.bundle_from, "given with --bundle-from"
    entries = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    latency = next((e for e in reversed(entries) if e["stage"] == "squad-latency"), None)
    if latency is None:
        raise SystemExit("no squad-latency record in --results: run the squad-students stage first.")
    teacher_f1 = _teacher_metrics(args, "squad")["f1"]
    fast = {n: v for n, v in latency["students"].items() if v["ratio"] <= 0.25 and v.get("f1") is not None}
    fits = {n: v for n, v in fast.items() if teacher_f1 - v["f1"] <= BUNDLE_MAX_F1_GAP}
    if not fits:
        best = max(fast, key=lambda n: fast[n]["f1"]) if fast else None
        raise SystemExit(
            f"no SQuAD student within 1/4 of the teacher's latency and {BUNDLE_MAX_F1_GAP} F1 of it (teacher F1 "
            f"{teacher_f1:.2f}"
            + (f"; best: {best}, F1 {fast[best]['f1']:.2f}" if best else "")
            + "); pass --bundle-from DIR to ship another model (the teacher's run dir/model ships the teacher)."
        )
    name = max(fits, key=lambda n: fits[n]["f1"])
    return args.work / f"squad-{name}" / "model", f"{name}: best F1 within 1/4 of the teacher's latency"


MODEL_CARD = """# squad-minilm-qa

Extractive question answering (SQuAD v1.1 style: the answer is a span of the given passage) in English,
uncased. {arch}, {origin}, with int8-compressed weights
(per-row scales; `canao.models.compressed`). Loaded by `canao.models.bundled_qa_dir()`; the QA app and
server use it when no artifact is given (compiled for the CPU on first use).

## Metrics

SQuAD v1.1 official exact match / F1 on the first 36 articles of the official dev set (8,123 questions;
`dev-v1.1-part-a.json`), 384 tokens, stride 128:

| model | runtime | exact match | F1 |
|---|---|---:|---:|
{metric_rows}

Compiled fp32 latency at 384 tokens on {cpu}, 2 threads (one run): this model {student_ms:.1f} ms, the
teacher {teacher_ms:.1f} ms ({ratio:.2f}x).

## How it was made

1. Teacher: all-MiniLM-L6-v2 (Apache-2.0; Wang et al. 2020, via the sentence-transformers release) fine-tuned
   on the SQuAD v1.1 training set: {teacher_settings}.
2. {model_step}
3. Weights compressed with `canao compress --weights int8`. Command for all of it:

       .venv/bin/python benchmarks/accuracy.py {command}

## Data and license

Trained on SQuAD v1.1 (Rajpurkar, Zhang, Lopyrev and Liang, "SQuAD: 100,000+ Questions for Machine
Comprehension of Text", EMNLP 2016; https://rajpurkar.github.io/SQuAD-explorer/), licensed CC BY-SA 4.0;
the training file was rebuilt from the official explorer pages (same content; question ids synthetic past
article 11, 8,995 ambiguous answer offsets set to the first occurrence). These weights are a derivative of
that data and are shared under CC BY-SA 4.0, with the base model's Apache-2.0 terms.

Limits: English Wikipedia-style passages; no "no answer" detection (SQuAD v1.1 always has an answer);
questions beyond one 384-token window are answered from the best window.
"""


BUNDLE_MAX_F1_GAP = 2.0  # issue 14: a shipped student stays within 2 F1 of its teacher
STUDENT_ORIGIN = "distilled by canao from its own SQuAD teacher"
TEACHER_ORIGIN = (
    "canao's SQuAD teacher itself, shipped until a distilled student within 2 F1 of it is ready (the same "
    "command ships the student then)"
)
STUDENT_STEP = """Student ({why}): two-stage distillation (TinyBERT recipe: hidden states through learned projections,
   attention distributions and MiniLM value relations first, then logits at temperature 2 with the labels):
   {recipe}."""
TEACHER_STEP = "No distillation: this is the teacher of step 1 ({why})."


def stage_bundle(args) -> None:
    import shutil
    import tempfile

    from canao.device import describe_machine
    from canao.models.compressed import compress_checkpoint
    from canao.models.hf import load_pretrained
    from canao.storage import replace_directory
    from canao.train.evaluate import evaluate_checkpoint

    start = time.perf_counter()
    source, why = _bundle_source(args)
    if (Path(source).parent / BUNDLED_TEACHER_MARK).exists():
        raise SystemExit(
            f"{source} is the bundled model itself (made by squad-teacher-bundled): it ships already, and "
            "compressing its int8 weights again would only re-round them under a card that calls it trained here. "
            "Pass --bundle-from a distilled student's or a trained teacher's model directory."
        )
    args.work.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=args.work))
    try:
        packed = staging / "squad-minilm-qa"
        result = compress_checkpoint(source, packed, "int8")
        if result.bytes_after > BUNDLE_LIMIT_BYTES:
            raise SystemExit(f"{source}: {result.bytes_after / 1e6:.1f} MB compressed, over the 25 MB limit.")
        teacher = _task_teacher(args, "squad")
        is_teacher = Path(source).resolve() == Path(teacher).resolve()
        scores = {}
        runs = [
            ("float32 " + ("teacher" if is_teacher else "student"), source, "pytorch"),
            ("int8-compressed (shipped)", packed, "pytorch"),
            ("int8-compressed (shipped)", packed, "compiled"),
        ]
        if args.bundle_compiled_only:  # the shipped model as the apps run it; its PyTorch score left out
            runs = [runs[0], runs[2]]
        for label, model, runtime in runs:
            scored_by_run = Path(model).parent / "metrics.json"  # the training run's own dev score
            if model == source and runtime == "pytorch" and scored_by_run.exists():
                saved = json.loads(scored_by_run.read_text())
                scores[f"{label}|{runtime}"] = saved.get("metrics", saved)  # distill nests them, finetune not
                continue
            metrics, _ = evaluate_checkpoint(model, "squad", SQUAD_DEV, runtime=runtime, threads=args.threads)
            scores[f"{label}|{runtime}"] = metrics
        spec = load_pretrained(packed).spec
        if is_teacher:  # one model: time it once
            teacher_ms = student_ms = compiled_latencies([spec], 384, args.threads)[0]
        else:
            teacher_ms, student_ms = compiled_latencies([load_pretrained(teacher).spec, spec], 384, args.threads)
        student_cfg = json.loads((source.parent / "train_config.json").read_text())
        rows = "\n".join(
            f"| {key.split('|')[0]} | {'canao compiled fp32' if key.endswith('compiled') else 'PyTorch'} | "
            f"{m['exact_match']:.2f} | {m['f1']:.2f} |"
            for key, m in scores.items()
        )
        card = MODEL_CARD.format(
            arch=spec.describe(),
            metric_rows=rows,
            cpu=describe_machine().cpu_model,
            student_ms=student_ms,
            teacher_ms=teacher_ms,
            ratio=student_ms / teacher_ms,
            teacher_settings=_teacher_settings(teacher.parent),
            origin=TEACHER_ORIGIN if is_teacher else STUDENT_ORIGIN,
            command="--stages squad-teacher,bundle --squad-teacher-run RUN --bundle-from RUN/model "
            "--bundle-compiled-only"
            if is_teacher
            else "--stages squad-teacher,squad-students,bundle",
            model_step=(TEACHER_STEP if is_teacher else STUDENT_STEP).format(
                why=why,
                recipe=f"{student_cfg['epochs']} epoch(s) of the prediction stage, batch {student_cfg['batch_size']}",
            ),
        )
        (packed / "README.md").write_text(card)
        summary = {
            "scores": scores,
            "latency_ms": {"teacher": teacher_ms, "student": student_ms},
            "source": str(source),
        }
        (packed / "metrics.json").write_text(json.dumps(summary, indent=1))
        for path in (packed, *packed.iterdir()):  # mkdtemp made it private; package data is world-readable
            path.chmod(0o755 if path.is_dir() else 0o644)
        replace_directory(packed, BUNDLED_QA)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record(
        args.results,
        {
            "stage": "bundle",
            "student": spec.describe(),
            "why": why,
            "bytes": result.bytes_after,
            **summary,
            "wall_min": (time.perf_counter() - start) / 60,
        },
    )


def _teacher_settings(run: Path) -> str:
    """How the SQuAD teacher was fine-tuned, for the model card: its run's train_config.json, or, for a run made
    from the bundled teacher, the settings its card gave."""
    if (run / BUNDLED_TEACHER_MARK).exists():
        return json.loads((run / BUNDLED_TEACHER_MARK).read_text())["teacher_settings"]
    cfg = json.loads((run / "train_config.json").read_text())
    return (
        f"{cfg['epochs']} epoch(s), batch {cfg['batch_size']}, lr {cfg['lr']}, {cfg['max_length']} tokens, "
        f"stride {cfg['doc_stride']}, {cfg.get('precision', 'fp32')} training"
    )


def stage_precision(args) -> None:
    from canao.train.evaluate import evaluate_checkpoint

    runs = [
        ("sst2", args.work / "sst2" / "model", SHARED / "glue/SST-2/dev.tsv", 128),
        ("sst2", args.work / "distill-sst2" / "model", SHARED / "glue/SST-2/dev.tsv", 128),
        ("squad", args.work / "squad" / "model", _split_squad(args)[1], 384),
    ]
    if args.squad_teacher_run:  # the full-set SQuAD teacher, scored on all of dev part A
        runs.append(("squad", _squad_teacher_config(args).output_dir / "model", SQUAD_DEV, 384))
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
            "model": str(model.relative_to(args.work)) if model.is_relative_to(args.work) else "squad-teacher/model",
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


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, float))


def _squad_teacher_lines(records: list[dict]) -> list[str]:
    if not records:
        return []
    r = records[-1]
    return [
        "",
        "## SQuAD teacher (full training set)",
        "",
        f"all-MiniLM-L6-v2 fine-tuned on {r['train']}, {r['epochs']} epoch(s), {r['settings']}; scored on "
        f"{r['dev']} with the official v1.1 metrics: **{_metrics_text(r['metrics'])}** ({r['steps']} steps). "
        "Command: `.venv/bin/python benchmarks/accuracy.py --stages squad-teacher` (resumable).",
    ]


def _student_lines(task: str, entries: list[dict]) -> list[str]:
    students = {r["name"]: r for r in entries if r["stage"] == f"{task}-student"}
    timings = [r for r in entries if r["stage"] == f"{task}-latency"]
    latency = timings[-1] if timings else None
    if not students:
        return []
    metric = TASK_METRIC[task]
    lines = [
        "",
        f"## {task.upper() if task == 'sst2' else 'SQuAD'} students: accuracy and compiled latency",
        "",
        f"Distilled from the {task} teacher; latency compiled fp32 at {TASK_LENGTH[task]} tokens, 2 threads, "
        "teacher and students timed in one run (fastest of 3 alternating rounds; a student's ratio is to the "
        "teacher of its own run, the teacher row gives the latest). Command: "
        f"`.venv/bin/python benchmarks/accuracy.py --stages {task}-students`.",
        "",
        f"| student | recipe | {metric} | teacher's | gap to teacher | latency ms | x teacher | wall (last run) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    if latency:
        lines.append(
            f"| teacher (latest) | fine-tuned | {list(students.values())[-1]['teacher_metric']:.2f} | | | "
            f"{latency['teacher_ms']:.2f} | 1.00 | |"
        )
    for name, r in students.items():
        timed = next((t["students"][name] for t in reversed(timings) if name in t["students"]), None)
        ms = f"{timed['ms']:.2f} | {timed['ratio']:.2f}" if timed else "- | -"
        lines.append(
            f"| {r['student']} | {r['recipe']} | {r['metrics'].get(metric, float('nan')):.2f} | "
            f"{r['teacher_metric']:.2f} | {r['gap_points']:.2f} | {ms} | {r['wall_min_this_invocation']:.0f} min |"
        )
    return lines


def _bundle_lines(records: list[dict]) -> list[str]:
    if not records:
        return []
    r = records[-1]
    lines = [
        "",
        "## Bundled QA model (canao/models/pretrained/squad-minilm-qa)",
        "",
        f"{r['student']} ({r['why']}), int8-compressed: {r['bytes'] / 1e6:.1f} MB on disk. Compiled fp32 latency "
        f"at 384 tokens: {r['latency_ms']['student']:.1f} ms vs the teacher's {r['latency_ms']['teacher']:.1f} ms. "
        "Command: `.venv/bin/python benchmarks/accuracy.py --stages bundle`.",
        "",
        "| weights | runtime | SQuAD v1.1 dev part A |",
        "|---|---|---|",
    ]
    for key, metrics in r["scores"].items():
        weights, runtime = key.split("|")
        lines.append(f"| {weights} | {runtime} | {_metrics_text(metrics)} |")
    return lines


NOTES_MARK = "<!-- notes: the text below this line, up to the next section, is kept when the file is rewritten -->"


def _kept_notes(text: str) -> dict[str, list[str]]:
    """Hand-written text of each section of an earlier docs/accuracy.md (after its NOTES_MARK), by heading."""
    notes: dict[str, list[str]] = {}
    heading, inside = "", False
    for line in text.splitlines():
        if line.startswith("## "):
            heading, inside = line, False
        elif line == NOTES_MARK:
            inside = True
            notes[heading] = []
        elif inside:
            notes[heading].append(line)
    return {h: body for h, body in notes.items() if any(line.strip() for line in body)}


def _with_notes(lines: list[str], notes: dict[str, list[str]]) -> list[str]:
    """`lines` with a NOTES_MARK closing every section, followed by that section's kept notes; notes of a
    section no longer generated go at the end under their heading, so rewriting never loses text."""
    out: list[str] = []
    heading = ""

    def close() -> None:
        while out and not out[-1].strip():
            out.pop()
        out.extend(["", NOTES_MARK, *_trimmed(notes.pop(heading, [])), ""])

    for line in lines:
        if line.startswith("## "):
            close()
            heading = line
        out.append(line)
    close()
    for orphan in list(notes):
        out.append(orphan)
        heading = orphan
        close()
    return _trimmed(out)[1:]


def _trimmed(body: list[str]) -> list[str]:
    while body and not body[-1].strip():
        body = body[:-1]
    while body and not body[0].strip():
        body = body[1:]
    return ["", *body] if body else []


def write_markdown(results: Path, out: Path) -> None:
    """docs/accuracy.md from the JSON lines of the stages run so far; the hand-written notes of each section
    (below its NOTES_MARK) in the existing file are kept."""
    entries = [json.loads(line) for line in results.read_text().splitlines()]
    machines = sorted({r.get("machine", EARLIER_MACHINE) for r in entries})
    lines = [
        "# Accuracy benchmark",
        "",
        f"Machines: {'; '.join(machines)} (each row's machine is in docs/accuracy.jsonl; the rows before the "
        f"SQuAD teacher: {EARLIER_MACHINE}); 2 threads; training in fp32 unless a row says bf16. Command: "
        "`.venv/bin/python benchmarks/accuracy.py --stages sst2,distill,squad --epochs 1`.",
        "",
        "| stage | model | data | metrics | steps | wall time |",
        "|---|---|---|---|---:|---:|",
    ]
    precision = [r for r in entries if r["stage"] == "precision"]
    newer = ("squad-teacher", "sst2-student", "squad-student", "sst2-latency", "squad-latency", "bundle")
    for r in (r for r in entries if r["stage"] != "precision" and r["stage"] not in newer):
        model = r.get("student") or r.get("model", "all-MiniLM-L6-v2")
        data = "SQuAD v1.1 dev part-a, 24 articles / 12 held out" if "squad" in r["stage"] else "GLUE SST-2 train / dev"
        metrics = _metrics_text(r["metrics"])
        if "gap_points" in r:
            metrics += f"; teacher {r['teacher_accuracy']:.2f}, gap {r['gap_points']:.2f} points"
        lines.append(f"| {r['stage']} | {model} | {data} | {metrics} | {r['steps']} | {r['wall_min']:.1f} min |")
    lines += _squad_teacher_lines([r for r in entries if r["stage"] == "squad-teacher"])
    for task in ("sst2", "squad"):
        lines += _student_lines(task, entries)
    lines += _bundle_lines([r for r in entries if r["stage"] == "bundle"])
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
    notes = _kept_notes(out.read_text()) if out.exists() else {}
    write_text_atomically(out, "\n".join(_with_notes(lines, notes)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="sst2,squad,distill")
    parser.add_argument("--work", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--results", type=Path, default=Path("docs/accuracy.jsonl"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--squad-train", type=Path)
    parser.add_argument("--squad-dev", type=Path)
    parser.add_argument("--squad-teacher-run", type=Path, help="run directory of the SQuAD teacher (resumed)")
    parser.add_argument("--squad-epochs", type=float, default=1.0)
    parser.add_argument("--students", help="comma-separated names of STUDENTS to distill (default: all)")
    parser.add_argument("--intermediate-epochs", type=float, default=1.0)
    parser.add_argument("--student-epochs", type=float, default=2.0)
    parser.add_argument(
        "--more-epochs",
        type=float,
        default=0.0,
        help="students: this many more epochs of the prediction stage from each finished student (run dir -moreN)",
    )
    parser.add_argument("--augment", type=int, default=0, help="SST-2 students: augmented variants per example")
    parser.add_argument("--prune-layers", help="--init prune: the teacher layers to keep, e.g. 1,3,5")
    parser.add_argument(
        "--init",
        default="slice",
        choices=("slice", "prune"),
        help="students start as the teacher's leading slice, or pruned to the most important heads and units of "
        "evenly spread teacher layers",
    )
    parser.add_argument(
        "--train-precision", default="auto", choices=("auto", "fp32", "bf16"), help="autocast for training stages"
    )
    parser.add_argument(
        "--bundle-compiled-only",
        action="store_true",
        help="bundle: score the int8 model compiled only (as the apps run it), not in PyTorch too",
    )
    parser.add_argument("--bundle-from", type=Path, help="student model directory to ship (default: best fit)")
    parser.add_argument("--write", type=Path, help="render the results file as markdown here and exit")
    args = parser.parse_args()
    if args.write:
        write_markdown(args.results, args.write)
        return
    torch.set_num_threads(args.threads)
    stages = {
        "sst2": stage_sst2,
        "squad": stage_squad,
        "squad-teacher": stage_squad_teacher,
        "squad-teacher-bundled": stage_squad_teacher_bundled,
        "distill": stage_distill,
        "sst2-students": stage_sst2_students,
        "squad-students": stage_squad_students,
        "bundle": stage_bundle,
        "precision": stage_precision,
    }
    for name in args.stages.split(","):
        print(f"== {name}", flush=True)
        stages[name](args)


if __name__ == "__main__":
    main()
