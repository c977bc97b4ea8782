"""The `canao` command line: flags -> config -> one library call, with rich output.

Examples::

    canao info
    canao teacher                       # report on the default teacher
    canao teacher --model DIR --squad dev-v1.1.json --out report/
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import canao
from canao.errors import CanaoError

app = typer.Typer(help="canao: compiler-aware NAS, distillation and compilation of transformers.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table whose first column is left-aligned and the rest (numbers) right-aligned."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    return table


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
    raise typer.Exit(code=2)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log library details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def version() -> None:
    """Print canao's version."""
    console.print(f"canao {canao.__version__}")


@app.command()
def info() -> None:
    """Print this machine: CPU, cores, SIMD, C compiler, library versions."""
    import numpy
    import torch

    from canao.latency.device import describe_machine, fingerprint

    machine = describe_machine()
    table = Table(title="canao info", show_header=False)
    rows = [
        ("canao", canao.__version__), ("python", platform.python_version()), ("architecture", machine.arch),
        ("CPU model", machine.cpu_model), ("cores", str(machine.cores)),
        ("SIMD flags", " ".join(machine.simd_flags) or "none"), ("SIMD level", machine.simd_level),
        ("C compiler", machine.compiler), ("device fingerprint", fingerprint(machine)),
        ("torch", f"{torch.__version__} ({torch.get_num_threads()} threads)"), ("numpy", numpy.__version__),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command()
def teacher(
    model: Optional[Path] = typer.Option(None, help="HF checkpoint dir (default: bundled all-MiniLM-L6-v2)."),
    squad: Optional[Path] = typer.Option(None, help="SQuAD v1.1/v2.0 JSON (default: bundled 2-article dev sample)."),
    max_questions: Optional[int] = typer.Option(None, min=1, help="Evaluate at most this many questions."),
    threads: int = typer.Option(2, min=1, help="Threads for PyTorch."),
    out: Optional[Path] = typer.Option(None, help="Directory to write report.json, report.html and latency.png into."),
) -> None:
    """Report on a teacher: size, parity with transformers, SQuAD sentence retrieval, latency."""
    from canao.report.teacher import TeacherReportConfig, make_teacher_report

    config = TeacherReportConfig(model_dir=model, squad_path=squad, max_questions=max_questions, threads=threads)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("embedding questions and sentences", total=None)
            report = make_teacher_report(config, lambda _stage, done, total: bar.update(task, completed=done, total=total))
    except CanaoError as err:
        _fail(err)
    _print_teacher_report(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(report.to_json())
        from canao.report.teacher_html import write_teacher_html

        page = write_teacher_html(report, out)
        console.print(f"wrote {out / 'report.json'} and {page} (with {out / 'latency.png'})")


def _print_teacher_report(report) -> None:
    r, lat = report.retrieval, report.latency
    table = Table(title=f"teacher: {report.spec_summary}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    parity = "n/a (transformers not installed)" if report.max_abs_diff_vs_transformers is None \
        else f"{report.max_abs_diff_vs_transformers:.2e}"
    rows = [
        ("parameters", f"{report.params / 1e6:.2f} M"),
        (f"GFLOPs at {report.seq_len} tokens", f"{report.gflops:.2f}"),
        ("max |canao - transformers| (hidden states)", parity),
        (f"SQuAD answer-sentence retrieval top-1 ({r.questions} questions)", f"{100 * r.top1:.1f} %"),
        ("  mean reciprocal rank", f"{r.mrr:.3f}"),
        ("  word-overlap baseline top-1", f"{100 * r.overlap_top1:.1f} %"),
        ("  chance top-1", f"{100 * r.chance_top1:.1f} %"),
        (f"PyTorch eager latency, batch 1, seq {report.seq_len}, {report.threads} threads "
         "(peers in alternating rounds)",
         f"{lat.median_ms:.2f} ms median, {lat.p90_ms:.2f} ms p90 ({lat.runs} runs)"),
        (f"canao compiled ({report.compiled_simd}) latency, same conditions",
         f"{report.compiled_latency.median_ms:.2f} ms median, {report.compiled_latency.p90_ms:.2f} ms p90"),
        ("  speed-up vs eager", f"{lat.median_ms / report.compiled_latency.median_ms:.2f}x"),
        ("  max |compiled - PyTorch|", f"{report.compiled_max_abs_diff:.2e}"),
        ("canao compiled, bf16 matrix products, same conditions",
         f"{report.bf16_latency.median_ms:.2f} ms median, {report.bf16_latency.p90_ms:.2f} ms p90"),
        ("  speed-up vs eager", f"{lat.median_ms / report.bf16_latency.median_ms:.2f}x"),
        ("  max |compiled bf16 - PyTorch|", f"{report.bf16_max_abs_diff:.2e}"),
        ("  retrieval top-1 / MRR with the bf16 build",
         f"{100 * report.bf16_retrieval.top1:.1f} % / {report.bf16_retrieval.mrr:.3f}"),
        ("machine", f"{report.machine.cpu_model} ({report.machine.simd_level})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command("compile")
def compile_cmd(
    model: Optional[Path] = typer.Option(None, help="HF checkpoint dir (default: bundled all-MiniLM-L6-v2)."),
    out: Path = typer.Option(Path("artifact"), help="Artifact directory to write."),
    task: Optional[str] = typer.Option(None, help="Override the task: backbone, classification, qa, lm."),
    simd: str = typer.Option("auto", help="SIMD level: auto, avx512bf16, avx512, avx2, neon, scalar."),
    precision: str = typer.Option("fp32", help="Matrix-product precision: fp32; bf16 (bf16 operands, fp32 sums; "
                                  "~2x faster GEMMs with AVX-512 BF16); int8 (dynamic quantization: int8 weights "
                                  "per column, activations per row at run time; ~4x with AVX-512 VNNI)."),
    explain: bool = typer.Option(False, help="Print per-pass op/tensor counts and planned memory."),
    dump: Optional[Path] = typer.Option(None, help="Write the IR after every pass and the C source here."),
) -> None:
    """Compile a checkpoint into an artifact for this CPU (fused, packed, native code)."""
    from canao.compiler.artifact import write_artifact
    from canao.compiler.explain import dump_stages, explain_pipeline
    from canao.compiler.lower import lower_spec
    from canao.compiler.toolchain import panel_width_for, resolve_simd
    from canao.models.hf import load_pretrained
    from canao.models.teacher import load_teacher

    try:
        loaded = load_teacher(task) if model is None else load_pretrained(model, task=task)
        weights = {k: v.detach().numpy() for k, v in loaded.model.state_dict().items()}
        nr = panel_width_for(resolve_simd(simd))
        if explain or dump:
            lowered = lower_spec(loaded.spec, weights, loaded.task)
            if explain:
                _print_explain(explain_pipeline(lowered, nr=nr, precision=precision))
            if dump:
                for path in dump_stages(lowered, dump, nr=nr, precision=precision):
                    console.print(f"wrote {path}")
        write_artifact(out, loaded.spec, weights, task=loaded.task, labels=loaded.labels,
                       tokenizer=loaded.tokenizer, simd=simd, precision=precision)
    except CanaoError as err:
        _fail(err)
    console.print(f"compiled {loaded.spec.describe()} ({loaded.task}, {precision}) into {out}")


def _print_explain(rows) -> None:
    table = _table("compiler passes (memory at max positions)",
                   ("stage", "ops", "intermediate tensors", "activation MB (one buffer each)", "planned peak MB"))
    for r in rows:
        peak = "" if r.planned_peak_bytes is None else f"{r.planned_peak_bytes / 2**20:.2f}"
        table.add_row(r.stage, str(r.ops), str(r.intermediates), f"{r.activation_bytes / 2**20:.2f}", peak)
    console.print(table)


@app.command("run")
def run_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`)."),
    text: list[str] = typer.Option(..., "--text", help="Input text; give it twice to compare two sentences."),
    context: Optional[str] = typer.Option(None, help="Context paragraph (span-QA artifacts)."),
    max_new_tokens: int = typer.Option(20, min=1, help="Tokens to generate (decoder artifacts)."),
    threads: int = typer.Option(2, min=1),
) -> None:
    """Run an artifact on text and print its output (embedding, label, answer or continuation)."""
    from canao.apps import inference
    from canao.compiler.artifact import load_artifact

    try:
        art = load_artifact(artifact, threads=threads)
        task = art.model.task
        if task == "backbone":
            vectors = inference.embed(art, list(text))
            for t, v in zip(text, vectors):
                console.print(f"{t!r}: embedding[{v.size}] = [{', '.join(f'{x:+.4f}' for x in v[:6])}, ...]")
            if len(text) > 1:
                console.print(f"cosine similarity: {float(vectors[0] @ vectors[1]):.4f}")
        elif task == "classification":
            console.print(inference.classify(art, text[0], text[1] if len(text) > 1 else None))
        elif task == "qa":
            if context is None:
                raise inference.AppError("a span-QA artifact needs --context with the paragraph to search.")
            ans = inference.answer(art, text[0], context)
            console.print(f"answer: {ans.text!r} (score {ans.score:.2f})")
        else:
            console.print(text[0] + inference.greedy_generate(art, text[0], max_new_tokens))
    except CanaoError as err:
        _fail(err)


@app.command()
def bench(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`)."),
    seq_len: int = typer.Option(128, min=1, help="Tokens (encoder) or context length (decoder)."),
    runs: int = typer.Option(20, min=20, help="Timed runs after warm-up (>= 20)."),
    threads: int = typer.Option(2, min=1),
) -> None:
    """Latency of the compiled artifact next to PyTorch eager, batch 1, same run and threads."""
    from canao.compiler.artifact import load_artifact
    from canao.latency.device import describe_machine
    from canao.report.bench import bench_artifact

    try:
        art = load_artifact(artifact, threads=threads)
        rows = bench_artifact(art, seq_len=seq_len, runs=runs, threads=threads)
    except CanaoError as err:
        _fail(err)
    machine = describe_machine()
    table = _table(f"{art.model.spec.describe()} | seq {seq_len} | batch 1 | {threads} threads | "
                   f"{machine.cpu_model} ({getattr(art.model, 'simd', machine.simd_level)})",
                   ("runtime", "median ms", "p90 ms", "IQR ms", "speed-up vs eager", "max |diff| vs eager"))
    base = rows[0].stats.median_ms
    for r in rows:
        table.add_row(r.runtime, f"{r.stats.median_ms:.3f}", f"{r.stats.p90_ms:.3f}", f"{r.stats.iqr_ms:.3f}",
                      f"{base / r.stats.median_ms:.2f}x", f"{r.max_abs_diff:.2e}")
    console.print(table)


@app.command()
def tune(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`)."),
    budget_s: float = typer.Option(60.0, min=0.0, help="Time budget for new measurements, seconds."),
    seq_len: int = typer.Option(128, min=1, help="Sequence length to tune the GEMMs for."),
    threads: int = typer.Option(2, min=1),
) -> None:
    """Auto-tune an artifact's GEMM kernels on this CPU (results cached in the tuning database)."""
    from canao.compiler.artifact import retune_artifact
    from canao.compiler.tune import TuningDatabase, device_key

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    before = TuningDatabase.load()
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("tuning GEMM shapes", total=None)
            build = retune_artifact(artifact, budget_s=budget_s, seq_len=seq_len, threads=threads,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    except CanaoError as err:
        _fail(err)
    info = json.loads((build / "tuning.json").read_text())
    db = TuningDatabase.load()
    device = device_key(info["simd"], threads)
    new = len(db.entries.get(device, {})) - len(before.entries.get(device, {}))
    table = _table(f"GEMM tuning on {device} (seq {seq_len}); {new} new shape(s) measured",
                   ("shape", "MR", "KC", "ms", "GFLOP/s", "variants timed"))
    for key, entry in sorted(db.entries.get(device, {}).items()):
        table.add_row(key, str(entry["mr"]), str(entry["kc"]), f"{entry['ms']:.3f}", f"{entry['gflops']:.1f}",
                      str(len(entry["candidates"])))
    console.print(table)
    console.print(f"rebuilt {build} with {info['tuned_gemms']} tuned GEMMs")


@app.command()
def profile(
    device: str = typer.Option("local", help="'local', 'qemu-aarch64', or a command template with {cmd}."),
    space: Optional[Path] = typer.Option(None, help="SearchSpace JSON (default: the built-in encoder space)."),
    out: Path = typer.Option(Path("profile.json"), help="Profile file to write (resumed if it exists)."),
    seq_lens: str = typer.Option("64,128,256", help="Comma-separated sequence lengths to profile."),
    threads: int = typer.Option(2, min=1),
    reps: int = typer.Option(30, min=5, help="Timed runs per block."),
    simd: Optional[str] = typer.Option(None, help="Target SIMD level for a remote template (e.g. neon)."),
    compiler: Optional[str] = typer.Option(None, help="C (cross) compiler for the target."),
    precision: str = typer.Option("fp32", help="Matrix-product precision the blocks are compiled with: fp32, bf16, "
                                  "int8 (a profile predicts models compiled the same way)."),
) -> None:
    """Profile the compiled building blocks of a search space on a device (resumable)."""
    from canao.arch import SearchSpace
    from canao.latency.device import make_executor
    from canao.latency.profile import ProfileConfig, expected_jobs, profile_device
    from canao.search.space import default_encoder_space

    try:
        search_space = default_encoder_space() if space is None else SearchSpace.from_json(space.read_text())
        lens = tuple(int(x) for x in seq_lens.split(",") if x.strip())
        config = ProfileConfig(search_space, seq_lens=lens, threads=threads, reps=reps, precision=precision)
        executor = make_executor(device, simd=simd, compiler=compiler)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("profiling blocks", total=expected_jobs(config))
            result = profile_device(config, executor, out,
                                    lambda key, done, total: bar.update(task, completed=done, description=key[:40]))
    except (CanaoError, ValueError, OSError, RuntimeError) as err:
        _fail(err)
    console.print(f"profiled {len(result.blocks)} blocks and {len(result.calibration)} whole models on "
                  f"{result.device_description}; wrote {out}")


@app.command()
def latency(
    arch_path: Path = typer.Option(..., "--arch", help="ArchSpec JSON file."),
    profile_path: Path = typer.Option(Path("profile.json"), "--profile", help="Device profile from `canao profile`."),
    seq_len: int = typer.Option(128, min=1),
    measure: bool = typer.Option(True, help="Also compile and measure the model on this device."),
    threads: int = typer.Option(2, min=1),
) -> None:
    """Predicted (from the device profile) and measured compiled latency of an architecture."""
    import time

    from canao.arch import ArchSpec
    from canao.latency.device import executor_fingerprint, make_executor
    from canao.latency.predictor import LatencyPredictor
    from canao.latency.profile import DeviceProfile, measure_model

    try:
        spec = ArchSpec.from_json(arch_path.read_text())
        executor = make_executor("local")
        prof = DeviceProfile.load(profile_path, device=executor_fingerprint(executor))
        predictor = LatencyPredictor(prof)
        start = time.perf_counter()
        predicted = predictor.predict_ms(spec, seq_len)
        predict_us = (time.perf_counter() - start) * 1e6
        measured = measure_model(spec, executor, seq_len, threads=threads,
                                 precision=prof.precision) if measure else None
    except (CanaoError, ValueError, OSError) as err:
        _fail(err)
    console.print(spec.describe())
    console.print(f"predicted: {predicted:.3f} ms (seq {seq_len}, {prof.precision}; prediction took {predict_us:.0f} us)")
    if measured is not None:
        error = 100 * (predicted - measured.median_ms) / measured.median_ms
        console.print(f"measured:  {measured.median_ms:.3f} ms median (p10 {measured.p10_ms:.3f}, "
                      f"p90 {measured.p90_ms:.3f}); error {error:+.1f}%")


def _task_files(task: str, train: Optional[Path], dev: Optional[Path]) -> tuple[Path, Optional[Path]]:
    """The given (train, dev) files, else the bundled ones where canao ships them."""
    from canao.data.squad import SAMPLES_DIR

    bundled = {"sst2": (SAMPLES_DIR / "sst2-train-sample.tsv", SAMPLES_DIR / "sst2-dev.tsv"),
               "qnli": (SAMPLES_DIR / "qnli-dev-sample.tsv", None)}.get(task, (None, None))
    train, dev = train or bundled[0], dev or bundled[1]
    if train is None:
        raise CanaoError(f"task {task} has no bundled training data; pass --train FILE.")
    return train, dev


def _training_progress(description: str):
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"))
    bar = Progress(*columns, console=console)
    task = bar.add_task(description, total=None, loss=float("nan"))
    return bar, lambda step, total, loss: bar.update(task, completed=step, total=total, loss=loss)


def _train_options(task: str, out: Path, epochs: float, batch_size: int, grad_accum: int, lr: float,
                   max_length: int, max_steps: Optional[int], seed: int):
    from canao.train.finetune import FinetuneConfig

    return FinetuneConfig(task=task, output_dir=out, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum,
                          lr=lr, max_length=max_length, max_steps=max_steps, seed=seed)


@app.command()
def finetune(
    task: str = typer.Option(..., help="sst2, mrpc, qnli, squad or lm."),
    teacher: Optional[Path] = typer.Option(None, help="Checkpoint to fine-tune (default: the bundled teacher)."),
    train: Optional[Path] = typer.Option(None, help="Training file in the task's standard format."),
    dev: Optional[Path] = typer.Option(None, help="Evaluation file (optional)."),
    out: Path = typer.Option(Path("finetuned"), help="Run directory (checkpoint, model/, metrics.json); resumed."),
    epochs: float = typer.Option(3.0), batch_size: int = typer.Option(32), grad_accum: int = typer.Option(1),
    lr: float = typer.Option(5e-5), max_length: int = typer.Option(128), max_steps: Optional[int] = typer.Option(None),
    seed: int = typer.Option(0),
) -> None:
    """Fine-tune a checkpoint on a task (AdamW, warm-up/decay, checkpoints, resume)."""
    from canao.train.finetune import finetune as run

    try:
        train, dev = _task_files(task, train, dev)
        config = _train_options(task, out, epochs, batch_size, grad_accum, lr, max_length, max_steps, seed)
        bar, update = _training_progress(f"fine-tuning {task}")
        with bar:
            result = run(config, teacher, train, dev, progress=update)
    except CanaoError as err:
        _fail(err)
    console.print(f"{result.steps} steps, final loss {result.final_loss:.4f}; dev {result.metrics}; model in {out / 'model'}")


@app.command()
def distill(
    task: str = typer.Option(..., help="sst2, mrpc, qnli, squad or lm."),
    teacher: Path = typer.Option(..., help="Teacher fine-tuned on the task."),
    arch_path: Path = typer.Option(..., "--arch", help="Student ArchSpec JSON."),
    train: Optional[Path] = typer.Option(None), dev: Optional[Path] = typer.Option(None),
    out: Path = typer.Option(Path("distilled")),
    epochs: float = typer.Option(3.0), batch_size: int = typer.Option(32), grad_accum: int = typer.Option(1),
    lr: float = typer.Option(1e-4), max_length: int = typer.Option(128), max_steps: Optional[int] = typer.Option(None),
    seed: int = typer.Option(0), temperature: float = typer.Option(2.0),
) -> None:
    """Distill a student architecture from a fine-tuned teacher (logits, hidden states, attention)."""
    from canao.arch import ArchSpec
    from canao.train.distill import DistillConfig
    from canao.train.distill import distill as run

    try:
        train, dev = _task_files(task, train, dev)
        spec = ArchSpec.from_json(arch_path.read_text())
        config = DistillConfig(_train_options(task, out, epochs, batch_size, grad_accum, lr, max_length, max_steps,
                                              seed), temperature=temperature)
        bar, update = _training_progress(f"distilling {spec.describe()}")
        with bar:
            result = run(config, teacher, spec, train, dev, progress=update)
    except CanaoError as err:
        _fail(err)
    console.print(f"{result.steps} steps, final loss {result.final_loss:.4f}; dev {result.metrics}; student in {out / 'model'}")


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="Checkpoint directory (canao or Hugging Face layout)."),
    task: str = typer.Option(..., help="sst2, mrpc, qnli, squad or lm."),
    data: Path = typer.Option(..., help="Evaluation file in the task's standard format."),
    predictions: Optional[Path] = typer.Option(None, help="Write predictions here (SQuAD: {id: answer})."),
    max_length: int = typer.Option(384), squad_v2: bool = typer.Option(False, help="SQuAD v2.0 no-answer scoring."),
    runtime: str = typer.Option("pytorch", help="pytorch, or compiled (compile for this CPU, score its outputs)."),
    precision: str = typer.Option("fp32", help="Matrix-product precision of the compiled runtime: fp32, bf16, int8."),
) -> None:
    """Print a checkpoint's official task metrics on a data file."""
    from canao.train.evaluate import evaluate_checkpoint

    try:
        metrics, preds = evaluate_checkpoint(model, task, data, max_length=max_length, version_2=squad_v2,
                                             runtime=runtime, precision=precision)
    except CanaoError as err:
        _fail(err)
    console.print(json.dumps(metrics, indent=2))
    if predictions is not None and preds is not None:
        predictions.write_text(json.dumps(preds, indent=1))
        console.print(f"wrote {predictions}")


@app.command("train-lm")
def train_lm(
    data: Optional[Path] = typer.Option(None, help="UTF-8 text corpus (default: bundled tinyshakespeare sample)."),
    out: Path = typer.Option(Path("lm"), help="Run directory (checkpoint, model/, metrics.json); resumed."),
    preset: str = typer.Option("tiny", help="Decoder size: tiny or small."),
    max_steps: int = typer.Option(2000, min=1), batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-3), seed: int = typer.Option(0),
) -> None:
    """Train a byte-level BPE tokenizer and a small GPT-2-style decoder from scratch on a text corpus."""
    from canao.data.text import bundled_text_sample
    from canao.train.lm import train_language_model

    try:
        bar, update = _training_progress(f"training the {preset} decoder")
        with bar:
            result = train_language_model(data or bundled_text_sample(), out, preset=preset, max_steps=max_steps,
                                          batch_size=batch_size, lr=lr, seed=seed, progress=update)
    except CanaoError as err:
        _fail(err)
    summary = json.loads((out / "metrics.json").read_text())
    console.print(f"{result.steps} steps; validation perplexity {result.metrics.get('perplexity', float('nan')):.2f} "
                  f"(unigram baseline {summary['unigram_perplexity']:.2f}); model in {out / 'model'}")


@app.command()
def arch(path: Path = typer.Argument(..., help="ArchSpec JSON file."),
         seq_len: int = typer.Option(128, min=1, help="Sequence length for FLOPs.")) -> None:
    """Validate an ArchSpec JSON file and print its size."""
    from canao.arch import ArchSpec

    try:
        spec = ArchSpec.from_json(path.read_text())
    except (CanaoError, OSError) as err:
        _fail(err)
    console.print(spec.describe())
    console.print(json.dumps({"params": spec.num_params(), f"gflops@{seq_len}": spec.flops(seq_len) / 1e9}))


if __name__ == "__main__":
    app()
