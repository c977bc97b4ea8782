"""The `canao` command line: flags -> config -> one library call -> print.

One name per concept across commands: `--model` is the checkpoint a
command reads (`--teacher` where a second model, the teacher, is involved),
`--arch` an ArchSpec file, `--out` what a command writes, an artifact is the
positional argument, `--precision` / `--simd` / `--threads` /
`--tune-budget-s` / `--tune-seq-len` mean what BuildOptions says. User
errors (bad flags, files, data) print one line and exit 2; a bug prints a
one-line report and exits 1, with the traceback under `--verbose`. Long jobs
draw a progress bar on a terminal and print progress lines otherwise.

Examples::

    canao info
    canao teacher                       # report on the default teacher
    canao compile --out art --precision bf16 && canao run art --text "hello"
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import platform
import time
from contextlib import contextmanager, nullcontext
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import canao
from canao.compiler.layout import Precision
from canao.errors import CanaoError, SpecError
from canao.search.controllers import DEFAULT_CONTROLLER
from canao.search.controllers import REGISTRY as CONTROLLER_REGISTRY
from canao.train.progress import loss_text

app = typer.Typer(
    help="canao: compiler-aware NAS, distillation and compilation of transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
_state = {"verbose": False}
F = TypeVar("F", bound=Callable[..., Any])


class Simd(str, Enum):
    auto = "auto"
    amx = "amx"
    avx512bf16 = "avx512bf16"
    avx512 = "avx512"
    avx2 = "avx2"
    neon = "neon"
    scalar = "scalar"


class Runtime(str, Enum):
    pytorch = "pytorch"
    compiled = "compiled"


def _layer_list(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """`--prune-layers 1,3,5` as a tuple of layer indices (None when not given)."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated layer indices such as 1,3,5, got {text!r}.") from None


def _check_layer_list(text: Optional[str]) -> Optional[str]:
    """Option callback: a malformed list is a usage error before any work starts."""
    _layer_list(text)
    return text


class StudentInit(str, Enum):
    slice = "slice"
    prune = "prune"


class TrainPrecision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


PRECISION_HELP = (
    "Matrix-product precision: fp32; bf16 (bf16 operands, fp32 sums; ~2x faster GEMMs with AVX-512 "
    "BF16); int8 (dynamic quantization: int8 weights per column, activations per row at run time)."
)
THREADS_HELP = "Threads (1-256)."
CONTROLLER_HELP = "; ".join(f"{e.name}: {e.about}" for e in CONTROLLER_REGISTRY.values()) + "."
MAX_LENGTH_HELP = "Tokens per example (default: the task's, 384 for squad and 128 for the others)."
TRUST_HELP = (
    "Load the artifact's compiled library as it is, even if it was not built on this machine (by default such a "
    "build is compiled again here from model.safetensors: a library from elsewhere could run any code)."
)
DEVICE_HELP = "How to reach the profile's device when it is not this machine (the template it was profiled with)."


# ------------------------------------------------------------------ plumbing
# typer (0.29 on) runs a click of its own: its BadParameter is not a `click.ClickException`, so both are named
_USAGE_ERRORS = (typer.Exit, typer.BadParameter, click.ClickException)


def command(name: Optional[str] = None) -> Callable[[F], F]:
    """Register a command whose user errors print one line (exit 2) and whose bugs print one line (exit 1; the
    traceback with --verbose)."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except _USAGE_ERRORS:  # usage errors raised in a body: click prints them, exit 2
                raise
            except (CanaoError, OSError) as err:  # OSError: a path the user gave cannot be read or written
                _fail(err)
            except KeyboardInterrupt:
                console.print("[bold red]interrupted[/]")
                raise typer.Exit(code=130) from None
            except Exception as err:
                if _state["verbose"]:
                    console.print_exception()
                hint = "" if _state["verbose"] else "; re-run with --verbose for the traceback."
                console.print(
                    Text.assemble(
                        ("internal error (a bug in canao, please report it):", "bold red"),
                        f" {type(err).__name__}: {err}{hint}",
                    ),
                    soft_wrap=True,
                )
                raise typer.Exit(code=1) from None

        app.command(name)(wrapped)
        return fn

    return register


def _fail(err: BaseException) -> None:
    # the message as plain text: a path or value with brackets in it is not rich markup
    console.print(Text.assemble(("error:", "bold red"), f" {err}"), soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table whose first column is left-aligned and the rest (numbers) right-aligned."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    return table


@contextmanager
def progress_reporter(
    description: str, *, total: Optional[int] = None, loss: bool = False, every_s: float = 10.0
) -> Iterator[Callable[..., None]]:
    """Yield `update(done, total=None, loss=None, description=None)`: a rich bar on a terminal, else a plain
    progress line at most every `every_s` seconds (and at the end), so logs under nohup or CI show life."""
    if console.is_terminal:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if loss:
            columns.append(TextColumn("{task.fields[loss]}"))
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(description, total=total, loss="")

            def update(
                done: int, total: Optional[int] = None, loss: Optional[float] = None, description: Optional[str] = None
            ) -> None:
                fields: dict[str, Any] = {}
                if loss is not None:
                    fields["loss"] = loss_text(loss)
                bar.update(task, completed=done, total=total, description=description, **fields)

            yield update
        return
    start, last = time.monotonic(), [0.0]
    state: dict[str, Any] = {"done": 0, "total": total, "loss": None}

    def line() -> str:
        done, total_ = state["done"], state["total"]
        pct = f" ({100 * done / total_:.0f}%)" if total_ else ""
        shown = ""
        if state["loss"] is not None:
            shown = loss_text(state["loss"])
        extra = f", {shown}" if shown else ""
        what = state.get("description") or description
        return f"{what}: {done}/{total_ or '?'}{pct}{extra}, {time.monotonic() - start:.0f} s"

    def update_lines(
        done: int, total: Optional[int] = None, loss: Optional[float] = None, description: Optional[str] = None
    ) -> None:
        state.update(done=done, total=total or state["total"], loss=loss if loss is not None else state["loss"])
        if description and description != state.get("description"):
            state["description"], last[0] = description, 0.0  # a new phase: say so at once
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            print(line(), flush=True)

    yield update_lines
    if state["done"]:
        print(line(), flush=True)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log library details; tracebacks for bugs."),
) -> None:
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


# -------------------------------------------------------------- information
@command()
def version() -> None:
    """Print canao's version."""
    console.print(f"canao {canao.__version__}")


@command()
def info() -> None:
    """Print this machine: CPU, cores, SIMD, C compiler, library versions."""
    import numpy
    import torch

    from canao.device import describe_machine, fingerprint

    machine = describe_machine()
    table = Table(title="canao info", show_header=False)
    rows = [
        ("canao", canao.__version__),
        ("python", platform.python_version()),
        ("architecture", machine.arch),
        ("CPU model", machine.cpu_model),
        ("cores", str(machine.cores)),
        ("SIMD flags", " ".join(machine.simd_flags) or "none"),
        ("SIMD level", machine.simd_level),
        ("C compiler", machine.compiler),
        ("device fingerprint", fingerprint(machine)),
        ("torch", f"{torch.__version__} ({torch.get_num_threads()} threads)"),
        ("numpy", numpy.__version__),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@command()
def teacher(
    model: Optional[Path] = typer.Option(None, help="HF checkpoint dir (default: bundled all-MiniLM-L6-v2)."),
    squad: Optional[Path] = typer.Option(None, help="SQuAD v1.1/v2.0 JSON (default: bundled 2-article dev sample)."),
    max_questions: Optional[int] = typer.Option(None, min=1, help="Evaluate at most this many questions."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    out: Optional[Path] = typer.Option(None, help="Directory to write report.json, report.html and latency.png into."),
) -> None:
    """Report on a teacher: size, parity with transformers, SQuAD sentence retrieval, latency."""
    from canao.report.teacher import TeacherReportConfig, make_teacher_report
    from canao.report.teacher_html import write_teacher_report
    from canao.storage import check_output_path

    if out is not None:
        check_output_path(out, "--out", directory=True)  # before the minutes of measuring
    config = TeacherReportConfig(model_dir=model, squad_path=squad, max_questions=max_questions, threads=threads)
    with progress_reporter("embedding questions and sentences") as update:
        report = make_teacher_report(config, lambda _stage, done, total: update(done, total))
    _print_teacher_report(report)
    if out is not None:
        page = write_teacher_report(report, out)
        console.print(f"wrote {out / 'report.json'} and {page} (with {out / 'latency.png'})")


def _print_teacher_report(report: Any) -> None:
    r, lat = report.retrieval, report.latency
    table = _table(f"teacher: {report.spec_summary}", ("measure", "value"))
    parity = (
        "n/a (transformers not installed)"
        if report.max_abs_diff_vs_transformers is None
        else f"{report.max_abs_diff_vs_transformers:.2e}"
    )
    rows = [
        ("parameters", f"{report.params / 1e6:.2f} M"),
        (f"GFLOPs at {report.seq_len} tokens", f"{report.gflops:.2f}"),
        ("max |canao - transformers| (hidden states)", parity),
        (f"SQuAD answer-sentence retrieval top-1 ({r.questions} questions)", f"{100 * r.top1:.1f} %"),
        ("  mean reciprocal rank", f"{r.mrr:.3f}"),
        ("  word-overlap baseline top-1", f"{100 * r.overlap_top1:.1f} %"),
        ("  chance top-1", f"{100 * r.chance_top1:.1f} %"),
        (
            f"PyTorch eager latency, batch 1, seq {report.seq_len}, {report.threads} threads "
            "(peers in alternating rounds)",
            f"{lat.median_ms:.2f} ms median, {lat.p90_ms:.2f} ms p90 ({lat.runs} runs)",
        ),
    ]
    for precision, result in report.compiled.items():
        rows += [
            (
                f"canao compiled {precision} ({report.compiled_simd}), same conditions",
                f"{result.latency.median_ms:.2f} ms median, {result.latency.p90_ms:.2f} ms p90",
            ),
            ("  speed-up vs eager", f"{lat.median_ms / result.latency.median_ms:.2f}x"),
            (f"  max |compiled {precision} - PyTorch|", f"{result.max_abs_diff:.2e}"),
        ]
        if result.retrieval is not None:
            rows.append(
                (
                    f"  retrieval top-1 / MRR with the {precision} build",
                    f"{100 * result.retrieval.top1:.1f} % / {result.retrieval.mrr:.3f}",
                )
            )
    rows.append(("machine", f"{report.machine.cpu_model} ({report.machine.simd_level})"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


# ------------------------------------------------------------------ compiler
def _build_options(
    simd: Simd, precision: Precision, threads: int, tune_budget_s: float = 0.0, tune_seq_len: int = 128
) -> Any:
    from canao.compiler.build import BuildOptions

    return BuildOptions(
        simd=simd.value, precision=precision, threads=threads, tune_budget_s=tune_budget_s, tune_seq_len=tune_seq_len
    )


@command("compile")
def compile_cmd(
    model: Optional[Path] = typer.Option(None, help="HF checkpoint dir (default: bundled all-MiniLM-L6-v2)."),
    out: Path = typer.Option(Path("artifact"), help="Artifact directory to write."),
    task: Optional[str] = typer.Option(None, help="Override the task: backbone, classification, qa, lm."),
    simd: Simd = typer.Option(Simd.auto, help="SIMD level of the code (auto: this CPU's widest)."),
    precision: Precision = typer.Option(Precision.FP32, help=PRECISION_HELP),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    tune_budget_s: float = typer.Option(0.0, min=0.0, help="Seconds to tune GEMM shapes missing from the database."),
    tune_seq_len: int = typer.Option(128, min=1, max=65536, help="Sequence length to tune the GEMMs for."),
    explain: bool = typer.Option(False, help="Print per-pass op/tensor counts and planned memory."),
    dump: Optional[Path] = typer.Option(None, help="Write the IR after every pass and the C source here."),
    force: bool = typer.Option(False, help="Move a non-artifact directory at --out aside (never deleted)."),
) -> None:
    """Compile a checkpoint into an artifact for this CPU (fused, packed, native code)."""
    from canao.compiler.checkpoint import compile_checkpoint

    options = _build_options(simd, precision, threads, tune_budget_s, tune_seq_len)
    result = compile_checkpoint(model, out, options, task=task, explain=explain, dump=dump, force=force)
    if result.explain:
        _print_explain(result.explain)
    for path in result.dumped:
        console.print(f"wrote {path}")
    console.print(f"compiled {result.spec.describe()} ({result.task}, {options.precision}) into {out}")


def _print_explain(rows: Any) -> None:
    table = _table(
        "compiler passes (memory at max positions)",
        ("stage", "ops", "intermediate tensors", "activation MB (one buffer each)", "planned peak MB"),
    )
    for r in rows:
        peak = "" if r.planned_peak_bytes is None else f"{r.planned_peak_bytes / 2**20:.2f}"
        table.add_row(r.stage, str(r.ops), str(r.intermediates), f"{r.activation_bytes / 2**20:.2f}", peak)
    console.print(table)


@command("run")
def run_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`)."),
    text: list[str] = typer.Option(..., "--text", help="Input text; give it twice to compare two sentences."),
    context: Optional[str] = typer.Option(None, help="Context paragraph (span-QA artifacts)."),
    max_new_tokens: int = typer.Option(20, min=1, max=100_000, help="Tokens to generate (decoder artifacts)."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    trust_artifact: bool = typer.Option(False, "--trust-artifact", help=TRUST_HELP),
) -> None:
    """Run an artifact on text and print its output (embedding, label, answer or continuation)."""
    from canao.apps.inference import run_text
    from canao.compiler.artifact import load_artifact

    art = load_artifact(artifact, threads=threads, trust=trust_artifact)
    for line in run_text(art, list(text), context=context, max_new_tokens=max_new_tokens):
        console.print(line, markup=False, highlight=False)


def _app_artifact(artifact: Optional[Path], task: str, threads: int, trust: bool = False) -> Any:
    """The given artifact, or the bundled model of `task` compiled for this CPU (first use compiles it)."""
    from canao.apps.bundled import bundled_artifact
    from canao.compiler.artifact import load_artifact

    if artifact is None:
        return bundled_artifact(task, threads=threads)
    return load_artifact(artifact, threads=threads, trust=trust)


@command()
def qa(
    artifact: Optional[Path] = typer.Argument(None, help="Span-QA artifact (default: the bundled QA model)."),
    question: list[str] = typer.Option(..., "--question", "-q", help="A question; repeat for several."),
    context: Optional[str] = typer.Option(None, help="The text to search."),
    context_file: Optional[Path] = typer.Option(None, help="A UTF-8 file with the text to search."),
    max_length: int = typer.Option(384, min=16, max=100_000, help="Window length in tokens."),
    doc_stride: int = typer.Option(128, min=1, help="Overlap of consecutive windows, in tokens."),
    max_answer_tokens: int = typer.Option(30, min=1, max=512, help="Longest answer, in tokens."),
    top_k: int = typer.Option(1, min=1, max=20, help="Answers to print per question."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    trust_artifact: bool = typer.Option(False, "--trust-artifact", help=TRUST_HELP),
    max_context_chars: int = typer.Option(
        1_000_000, min=1, help="Longest context accepted, in characters (about 2,500 windows of 384 tokens)."
    ),
) -> None:
    """Answer questions from a context of any length (windowed with doc stride), with a latency breakdown."""
    from dataclasses import asdict

    from canao.apps.inference import AppError
    from canao.apps.qa import QAOptions, answer_questions

    if (context is None) == (context_file is None):
        raise AppError("give exactly one of --context and --context-file.")
    text = context if context is not None else _read_context(Path(str(context_file)), max_context_chars)
    if len(text) > max_context_chars:
        raise AppError(
            f"the context has {len(text):,} characters, over --max-context-chars {max_context_chars:,}; pass a "
            "shorter text, or raise the limit (each 384-token window is one model call)."
        )
    if not text.strip() or any(not q.strip() for q in question):
        raise AppError("the context and every --question need some text.")
    art = _app_artifact(artifact, "qa", threads, trust_artifact)
    options = QAOptions(max_length, doc_stride, max_answer_tokens=max_answer_tokens, top_k=top_k)
    # progress over the windows, except with --json: stdout then carries one JSON object and nothing else
    with nullcontext(None) if json_output else progress_reporter("reading windows") as update:
        result = answer_questions(art, list(question), text, options, progress=update)
    if json_output:
        answers = [{"question": q, "answers": [asdict(a) for a in found]} for q, found in zip(question, result.answers)]
        print(json.dumps({"results": answers, "timings": result.timings.to_dict()}, ensure_ascii=False))
        return
    for q, found in zip(question, result.answers):
        console.print(f"Q: {q}", markup=False, highlight=False)
        if not found:
            console.print("   no answer span found", markup=False, highlight=False)
        for a in found:
            console.print(
                f"A: {a.text}  (p {a.probability:.2f}, score {a.score:.2f}, chars {a.start}-{a.end})",
                markup=False,
                highlight=False,
            )
    t = result.timings
    console.print(
        f"latency: tokenise {t.tokenize_ms:.1f} ms | model {t.model_ms:.1f} ms ({t.windows} window"
        f"{'s' if t.windows != 1 else ''}) | decode {t.decode_ms:.1f} ms | total {t.total_ms:.1f} ms",
        highlight=False,
    )


def _read_context(path: Path, max_chars: int) -> str:
    """The context file, refused before it is read when it cannot fit (a UTF-8 character is at most 4 bytes)."""
    from canao.apps.inference import AppError
    from canao.storage import read_user_text

    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_user_text names what is wrong
    if size > 4 * max_chars:
        raise AppError(
            f"{path}: {size:,} bytes, more than --max-context-chars {max_chars:,} characters can take; pass a "
            "shorter text, or raise the limit."
        )
    return read_user_text(path, "a UTF-8 text file", AppError)


@command()
def generate(
    artifact: Optional[Path] = typer.Argument(None, help="Decoder artifact (default: the bundled decoder)."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="Text to continue."),
    max_new_tokens: int = typer.Option(64, min=1, max=100_000, help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, min=0.0, max=100.0, help="0: greedy; higher: more random."),
    top_k: int = typer.Option(0, min=0, help="Sample among the k most likely tokens (0: all)."),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0, help="Nucleus sampling mass (1: off)."),
    repetition_penalty: float = typer.Option(1.0, min=0.0, max=100.0, help="> 1 discourages repeats."),
    stop: list[str] = typer.Option([], "--stop", help="Stop before this string; repeat for several."),
    seed: Optional[int] = typer.Option(None, min=0, max=2**63 - 1, help="Seed for reproducible sampling (>= 0)."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    trust_artifact: bool = typer.Option(False, "--trust-artifact", help=TRUST_HELP),
) -> None:
    """Continue a prompt, streaming tokens as they are produced (KV-cached), then report speed."""
    import sys

    from canao.apps.generate import GenerationSettings, stream

    settings = GenerationSettings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, tuple(stop), seed)
    art = _app_artifact(artifact, "lm", threads, trust_artifact)
    sys.stdout.write(prompt)
    for event in stream(art, prompt, settings):
        sys.stdout.write(event.text)
        sys.stdout.flush()
        if event.done:
            st = event.stats
            sys.stdout.write("\n")
            if st.prompt_tokens_dropped:
                console.print(
                    f"(the prompt was cut: its first {st.prompt_tokens_dropped} of {st.prompt_tokens} tokens did "
                    "not fit the context window)",
                    highlight=False,
                )
            console.print(
                f"{st.new_tokens} tokens | first token {st.time_to_first_token_ms:.1f} ms | "
                f"{st.tokens_per_s:.1f} tokens/s | stopped: {st.stop_reason}",
                highlight=False,
            )


@command()
def serve(
    artifacts: Optional[list[str]] = typer.Argument(
        None, help="Artifact directories, or NAME=DIR to name them (default: the bundled models)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, max=64, help="Loaded instances per model (requests run in parallel)."),
    threads: int = typer.Option(2, min=1, max=256, help="Threads per instance (1-256)."),
    max_queue: int = typer.Option(16, min=0, max=10_000, help="Requests that may wait per model; more get 429."),
    timeout_s: float = typer.Option(60.0, min=1.0, max=3600.0, help="Longest wait and longest run of a request."),
    max_body_kb: int = typer.Option(1024, min=1, max=1 << 20, help="Largest request body, in KiB."),
    trust_artifact: bool = typer.Option(False, "--trust-artifact", help=TRUST_HELP),
) -> None:
    """Serve artifacts over HTTP: /v1/qa, /v1/classify, /v1/generate, /v1/models, /metrics and a web page at /."""
    from canao.apps.bundled import bundled_artifact, bundled_checkpoint, serving_precision
    from canao.apps.server.pool import ModelPool, PoolSettings
    from canao.apps.server.serve import ServeSettings, check_listen_address, load_pools, parse_model_args
    from canao.apps.server.serve import serve as run_server
    from canao.models.teacher import BUNDLED_MODELS

    check_listen_address(host, port)  # before minutes of loading models
    pool_settings = PoolSettings(workers, threads, max_queue, timeout_s, trust_artifacts=trust_artifact)
    if artifacts:
        pools = load_pools(parse_model_args(list(artifacts)), pool_settings)
    else:
        pools = {}
        for task, name in BUNDLED_MODELS.items():
            try:
                precision, why = serving_precision(bundled_checkpoint(task))
                loaded = [bundled_artifact(task, threads=threads, precision=precision) for _ in range(workers)]
                pools[name] = ModelPool(name, loaded, pool_settings, note=why)
            except CanaoError as err:
                console.print(f"(not serving a bundled {task} model: {err})", highlight=False)
    for name, pool in pools.items():
        why = f" ({pool.note})" if pool.note else ""
        console.print(f"serving `{name}`: {pool.task}, {pool.info.model.spec.describe()}{why}", highlight=False)
    console.print(f"open http://{host}:{port}/ (API docs at /docs); Ctrl-C or SIGTERM stops", highlight=False)
    run_server(pools, ServeSettings(host, port, pool_settings, max_body_kb * 1024, timeout_s))


@command()
def bench(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`)."),
    seq_len: int = typer.Option(128, min=1, help="Tokens (encoder) or context length (decoder)."),
    runs: int = typer.Option(20, min=20, max=100_000, help="Timed runs after warm-up (>= 20)."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    per_op: bool = typer.Option(
        False, "--per-op", help="Also time every op inside the native forward pass (encoders; built with timers)."
    ),
    trust_artifact: bool = typer.Option(False, "--trust-artifact", help=TRUST_HELP),
) -> None:
    """Latency of the compiled artifact next to PyTorch eager, batch 1, same run and threads."""
    from canao.compiler.artifact import load_artifact
    from canao.device import describe_machine
    from canao.report.bench import bench_artifact

    art = load_artifact(artifact, threads=threads, trust=trust_artifact)
    result = bench_artifact(art, seq_len=seq_len, runs=runs, threads=threads)
    machine = describe_machine()
    note = "" if result.seq_len == seq_len else f" (asked {seq_len}: the model takes at most {result.seq_len})"
    table = _table(
        f"{art.model.spec.describe()} | seq {result.seq_len}{note} | batch 1 | {threads} threads | "
        f"{machine.cpu_model} ({art.model.simd})",
        ("runtime", "median ms", "p90 ms", "IQR ms", "speed-up vs eager", "max |diff| vs eager"),
    )
    base = result.rows[0].stats.median_ms
    for r in result.rows:
        table.add_row(
            r.runtime,
            f"{r.stats.median_ms:.3f}",
            f"{r.stats.p90_ms:.3f}",
            f"{r.stats.iqr_ms:.3f}",
            f"{base / r.stats.median_ms:.2f}x",
            f"{r.max_abs_diff:.2e}",
        )
    console.print(table)
    if per_op:
        _print_per_op(artifact, art, result.seq_len, runs, threads)


def _print_per_op(path: Path, art: Any, seq_len: int, runs: int, threads: int) -> None:
    from rich.markup import escape

    from canao.compiler.artifact import read_artifact_source
    from canao.compiler.build import BuildOptions
    from canao.report.per_op import group_ops, per_op_times

    if art.model.spec.kind != "encoder":
        console.print("(--per-op times encoder forward passes; this is a decoder)")
        return
    source = read_artifact_source(path)
    times = per_op_times(
        source.lowered(), BuildOptions(precision=source.precision, threads=threads), seq_len, runs=runs
    )
    total = sum(t.ms for t in times)
    table = _table(
        f"per op, median of {runs} passes, {source.precision.value}, seq {seq_len} (sum {total:.3f} ms)",
        ("op (all layers)", "count", "ms", "share", "GFLOP", "GFLOP/s"),
    )
    for g in group_ops(times):
        table.add_row(
            escape(g.name),  # "[bias+gelu]" is not rich markup
            str(g.count),
            f"{g.ms:.3f}",
            f"{100 * g.ms / total:.1f}%" if total else "-",
            f"{g.gflop:.3f}" if g.gflop else "",
            f"{g.gflops_per_s:.0f}" if g.gflop else "",
        )
    console.print(table)


@command()
def tune(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`)."),
    tune_budget_s: float = typer.Option(60.0, min=0.0, help="Time budget for new measurements, seconds."),
    tune_seq_len: int = typer.Option(128, min=1, max=65536, help="Sequence length to tune the GEMMs for."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
) -> None:
    """Auto-tune an artifact's GEMM kernels on this CPU (results kept in the tuning database after every shape)."""
    from canao.compiler.artifact import retune_artifact
    from canao.compiler.tune import TuningDatabase, device_key

    options = _build_options(Simd.auto, Precision.FP32, threads, tune_budget_s, tune_seq_len)
    with progress_reporter("tuning GEMM shapes") as update:
        build_path, built = retune_artifact(artifact, options, progress=update)
    device = device_key(built.options.simd, threads)
    table = _table(
        f"GEMM tuning on {device} (seq {tune_seq_len}); {built.shapes_measured} new shape(s) measured",
        ("shape", "MR", "KC", "ms", "GFLOP/s", "variants timed"),
    )
    for key, entry in sorted(TuningDatabase.load().entries.get(device, {}).items()):
        table.add_row(
            key,
            str(entry["mr"]),
            str(entry["kc"]),
            f"{entry['ms']:.3f}",
            f"{entry['gflops']:.1f}",
            str(len(entry["candidates"])),
        )
    console.print(table)
    tuned = sum(1 for n in built.graph.nodes if n.op == "gemm" and n.attr("mr", None) is not None)
    console.print(f"rebuilt {build_path} with {tuned} tuned GEMMs")


# ------------------------------------------------------------- latency model
@command()
def profile(
    device: str = typer.Option("local", help="'local', 'qemu-aarch64', or a command template with {cmd}."),
    space: Optional[Path] = typer.Option(None, help="SearchSpace JSON (default: the built-in encoder space)."),
    out: Optional[Path] = typer.Option(
        None, help="Profile file to write, resumed if it exists (default: in the cache, keyed by device and settings)."
    ),
    seq_lens: str = typer.Option("64,128,256", help="Comma-separated sequence lengths to profile."),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    reps: int = typer.Option(30, min=5, max=100_000, help="Timed runs per block."),
    simd: Optional[Simd] = typer.Option(None, help="Target SIMD level for a remote template (e.g. neon)."),
    compiler: Optional[str] = typer.Option(None, help="C (cross) compiler for the target."),
    precision: Precision = typer.Option(
        Precision.FP32,
        help="Matrix-product precision the blocks are compiled with (a profile predicts models compiled the same way).",
    ),
) -> None:
    """Profile the compiled building blocks of a search space on a device (resumable)."""
    from canao.latency.device import make_executor
    from canao.latency.profile import (
        ProfileConfig,
        default_profile_path,
        expected_jobs,
        parse_seq_lens,
        profile_device,
    )
    from canao.search.space import load_space
    from canao.storage import check_output_path

    config = ProfileConfig(
        load_space(space), seq_lens=parse_seq_lens(seq_lens), threads=threads, reps=reps, precision=precision.value
    )
    executor = make_executor(device, simd=simd.value if simd else None, compiler=compiler)
    out = out or default_profile_path(config, executor)
    check_output_path(out, "--out")
    with progress_reporter("profiling blocks", total=expected_jobs(config)) as update:
        result = profile_device(config, executor, out, lambda key, done, total: update(done, total, None, key[:40]))
    console.print(
        f"profiled {len(result.blocks)} blocks and {len(result.calibration)} whole models on "
        f"{result.device_description}; wrote {out}"
    )


@command()
def latency(
    arch: Path = typer.Option(..., help="ArchSpec JSON file."),
    profile_path: Path = typer.Option(
        None, "--profile", help="Device profile from `canao profile` (default: this machine's, in the cache)."
    ),
    seq_len: int = typer.Option(128, min=1, max=65536),
    measure: bool = typer.Option(True, help="Also compile and measure the model on the profile's device."),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
) -> None:
    """Predicted (from any device's profile) and measured (on that device) compiled latency of an architecture."""
    from canao.arch import read_arch
    from canao.latency.predictor import predict_and_measure
    from canao.latency.profile import ProfileConfig, default_profile_path
    from canao.search.space import load_space

    path = profile_path or default_profile_path(ProfileConfig(load_space(None)))
    result = predict_and_measure(read_arch(arch), path, seq_len, measure=measure, threads=threads, device=device)
    console.print(f"{result.spec.describe()} on {result.device}", highlight=False)
    console.print(
        f"predicted: {result.predicted_ms:.3f} ms +- {result.uncertainty_ms:.3f} (seq {seq_len}, {result.precision}; "
        f"prediction took {result.predict_us:.0f} us)",
        highlight=False,
    )
    if not result.current_kernels:
        console.print(
            f"[yellow]note: {path} timed the compiled kernels of another canao version; run `canao profile` again "
            "for predictions of today's code.[/yellow]"
        )
    if result.measured is not None:
        m = result.measured
        error = 100 * (result.predicted_ms - m.median_ms) / m.median_ms
        console.print(
            f"measured:  {m.median_ms:.3f} ms median (p10 {m.p10_ms:.3f}, p90 {m.p90_ms:.3f}); error {error:+.1f}%",
            highlight=False,
        )


# ------------------------------------------------------------------ training
def _train_config(
    task: str,
    out: Path,
    epochs: float,
    batch_size: int,
    grad_accum: int,
    lr: float,
    max_length: Optional[int],
    max_steps: Optional[int],
    seed: int,
    save_every_s: float,
    length_buckets: int = 0,
    precision: Any = "fp32",
) -> Any:
    """The training settings `finetune` and `distill` share (TRAIN_OPTIONS names them)."""
    from canao.optimize.config import TASK_SEQ_LEN
    from canao.train.finetune import FinetuneConfig, train_precision

    max_length = max_length or TASK_SEQ_LEN.get(task, 128)  # SQuAD's windows need 384 for their 128 stride

    return FinetuneConfig(
        task=task,
        output_dir=out,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        max_length=max_length,
        max_steps=max_steps,
        seed=seed,
        save_every_s=save_every_s,
        length_buckets=length_buckets,
        precision=train_precision(getattr(precision, "value", precision)),
    )


TRAIN_OPTIONS = frozenset(inspect.signature(_train_config).parameters)


TASK_HELP = "sst2, mrpc, qnli, squad or lm."
SAVE_HELP = "Also checkpoint every this many seconds (and on SIGTERM/SIGINT)."
BUCKETS_HELP = (
    "Batch examples of similar length: sort each pool of this many steps' examples by length (0: off). "
    "Cuts padding; SQuAD windows vary from ~150 to --max-length tokens."
)
TRAIN_PRECISION_HELP = (
    "auto, fp32 or bf16: bf16 runs forward and backward under bf16 autocast (weights and optimizer state stay "
    "fp32); auto picks it where the CPU has AMX or AVX-512 BF16. May change when a run resumes."
)


@command()
def finetune(
    task: str = typer.Option(..., help=TASK_HELP),
    model: Optional[Path] = typer.Option(None, help="Checkpoint to fine-tune (default: the bundled teacher)."),
    train: Optional[Path] = typer.Option(None, help="Training file in the task's standard format."),
    dev: Optional[Path] = typer.Option(None, help="Evaluation file (optional)."),
    out: Path = typer.Option(Path("finetuned"), help="Run directory (checkpoint, model/, metrics.json); resumed."),
    epochs: float = typer.Option(3.0),
    batch_size: int = typer.Option(32, min=1),
    grad_accum: int = typer.Option(1, min=1),
    lr: float = typer.Option(5e-5),
    max_length: Optional[int] = typer.Option(None, min=8, help=MAX_LENGTH_HELP),
    max_steps: Optional[int] = typer.Option(None, min=1),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (>= 0)."),
    save_every_s: float = typer.Option(300.0, min=1.0, help=SAVE_HELP),
    length_buckets: int = typer.Option(0, min=0, help=BUCKETS_HELP),
    precision: TrainPrecision = typer.Option(TrainPrecision.auto, help=TRAIN_PRECISION_HELP),
) -> None:
    """Fine-tune a checkpoint on a task (AdamW, warm-up/decay, checkpoints, resume)."""
    from canao.data.bundled import task_files
    from canao.train.finetune import finetune as run

    train, dev = task_files(task, train, dev)
    config = _train_config(**{name: value for name, value in locals().items() if name in TRAIN_OPTIONS})
    with progress_reporter(f"fine-tuning {task}", loss=True) as update:
        result = run(config, model, train, dev, progress=lambda step, total, loss: update(step, total, loss))
    console.print(
        f"{result.steps} steps, final loss {result.final_loss:.4f}; dev {result.metrics}; model in {out / 'model'}"
    )


@command()
def distill(
    task: str = typer.Option(..., help=TASK_HELP),
    teacher: Path = typer.Option(..., help="Teacher fine-tuned on the task."),
    arch: Path = typer.Option(..., help="Student ArchSpec JSON."),
    train: Optional[Path] = typer.Option(None),
    dev: Optional[Path] = typer.Option(None),
    out: Path = typer.Option(Path("distilled")),
    epochs: float = typer.Option(3.0),
    batch_size: int = typer.Option(32, min=1),
    grad_accum: int = typer.Option(1, min=1),
    lr: float = typer.Option(1e-4),
    max_length: Optional[int] = typer.Option(None, min=8, help=MAX_LENGTH_HELP),
    max_steps: Optional[int] = typer.Option(None, min=1),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (>= 0)."),
    temperature: float = typer.Option(2.0),
    save_every_s: float = typer.Option(300.0, min=1.0, help=SAVE_HELP),
    length_buckets: int = typer.Option(0, min=0, help=BUCKETS_HELP),
    value_weight: float = typer.Option(0.0, min=0.0, help="Weight of MiniLM value relations (last layers)."),
    intermediate_epochs: float = typer.Option(
        0.0, min=0.0, help="Two stages (TinyBERT): this many epochs of intermediate layers first, then --epochs."
    ),
    augment: int = typer.Option(
        0,
        min=0,
        max=100,
        help="GLUE tasks: add this many variants per example, words replaced by embedding neighbours.",
    ),
    augment_prob: float = typer.Option(0.4, min=0.01, max=1.0, help="Chance that a word of a variant is replaced."),
    precision: TrainPrecision = typer.Option(TrainPrecision.auto, help=TRAIN_PRECISION_HELP),
    init: StudentInit = typer.Option(
        StudentInit.slice,
        help="How the student starts: the teacher's leading slice, or pruned to the most important heads and "
        "FFN units (gradient importance on training batches) of evenly spread teacher layers.",
    ),
    prune_layers: Optional[str] = typer.Option(
        None,
        callback=_check_layer_list,
        help="With --init prune: the teacher layers to keep, e.g. 1,3,5 (default: those the uniform layer map "
        "targets, 1,3,5 of 6 for 3 layers).",
    ),
    start_from: Optional[Path] = typer.Option(
        None,
        help="A finished student of the --arch shape (its model directory) to train on in this new run: a longer "
        "schedule added later, with its own learning-rate schedule (--init is then unused). Every loss term runs "
        "unless --prediction-only.",
    ),
    prediction_only: bool = typer.Option(
        False,
        help="Logits and labels only, no intermediate terms (the teacher's logits cached, not rerun each step): "
        "the second stage of a two-stage recipe, e.g. more epochs for a student made with --intermediate-epochs.",
    ),
) -> None:
    """Distill a student architecture from a fine-tuned teacher (logits, hidden states, attention)."""
    from canao.arch import read_arch
    from canao.data.bundled import task_files
    from canao.train.distill import DistillConfig, prediction_stage
    from canao.train.distill import distill as run

    train, dev = task_files(task, train, dev)
    spec = read_arch(arch)
    config = DistillConfig(
        _train_config(**{name: value for name, value in locals().items() if name in TRAIN_OPTIONS}),
        temperature=temperature,
        value_weight=value_weight,
        intermediate_epochs=intermediate_epochs,
        augment_copies=augment,
        augment_prob=augment_prob,
        init=init.value,
        prune_layers=_layer_list(prune_layers),
    )
    if prediction_only:
        if intermediate_epochs:
            raise typer.BadParameter("--prediction-only is one stage; drop --intermediate-epochs or it.")
        config = prediction_stage(config)
    with progress_reporter(f"distilling {spec.describe()}", loss=True) as update:
        result = run(
            config,
            teacher,
            spec,
            train,
            dev,
            progress=lambda step, total, loss: update(step, total, loss),
            start_from=start_from,
        )
    console.print(
        f"{result.steps} steps, final loss {result.final_loss:.4f}; dev {result.metrics}; student in {out / 'model'}"
    )


@command()
def optimize(
    teacher: Optional[Path] = typer.Option(None, help="Teacher checkpoint (default: the bundled all-MiniLM-L6-v2)."),
    task: str = typer.Option("sst2", help="sst2, mrpc, qnli or squad."),
    train: Optional[Path] = typer.Option(None, help="Training file (default: the bundled sample of the task)."),
    dev: Optional[Path] = typer.Option(None, help="Held-out file (default: the bundled dev file of the task)."),
    device: str = typer.Option("local", help="'local', 'qemu-aarch64', or a command template with {cmd}."),
    simd: Optional[Simd] = typer.Option(None, help="SIMD level of a device reached by a template (e.g. neon)."),
    compiler: Optional[str] = typer.Option(None, help="C (cross) compiler for the device."),
    latency_ms: Optional[float] = typer.Option(
        None, min=0.001, help="Latency budget (default: a quarter of the teacher's predicted fp32 latency)."
    ),
    precision: str = typer.Option("auto", help="auto (fastest within --tolerance of fp32), fp32, bf16 or int8."),
    tolerance: float = typer.Option(0.5, min=0.0, help="Accuracy points --precision auto may give up for speed."),
    preset: str = typer.Option("quick", help="quick (~15 min on 2 cores on the defaults) or full (hours)."),
    out: Path = typer.Option(Path("optimize-run"), help="Run directory (every stage's output; resumed)."),
    from_stage: Optional[str] = typer.Option(
        None, "--from", help="Re-run from this stage (earlier output kept aside)."
    ),
    threads: int = typer.Option(2, min=1, max=256, help=THREADS_HELP),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (>= 0)."),
    train_precision: TrainPrecision = typer.Option(TrainPrecision.auto, help=TRAIN_PRECISION_HELP),
    student_init: str = typer.Option(
        "supernet",
        help="Distillation starts from the student's supernet slice, or 'prune': the teacher's most important "
        "heads and FFN units.",
    ),
    augment: int = typer.Option(
        0, min=0, help="Distillation: augmented variants per training sentence (GLUE tasks; 4 = 5x the data)."
    ),
) -> None:
    """Teacher -> profile -> supernet -> search -> distill -> compile -> evaluate -> artifact + report (resumable)."""
    from canao.optimize import OptimizeConfig
    from canao.optimize import optimize as run

    config = OptimizeConfig(
        out=out,
        teacher=teacher,
        task=task,
        train=train,
        dev=dev,
        device=device,
        simd=simd.value if simd else None,
        compiler=compiler,
        latency_ms=latency_ms,
        precision=precision,
        tolerance=tolerance,
        preset=preset,
        threads=threads,
        seed=seed,
        train_precision=train_precision.value,
        student_init=student_init,
        augment=augment,
    )

    def describe(stage: str, note: str) -> str:  # logs (no terminal) get a line per stage, not per step
        return f"{stage} {note}".strip() if console.is_terminal else stage

    with progress_reporter("optimize") as update:
        result = run(
            config,
            progress=lambda stage, note, done, total: update(done, total, None, describe(stage, note)),
            start_from=from_stage,
        )
    if result.reused:
        console.print(f"reused from an earlier run: {', '.join(result.reused)}")
    console.print(f"report: {result.report_html} (figures in {result.report_json})")
    if result.artifact is None:
        console.print(f"no artifact: {result.binding}")
        raise typer.Exit(code=3)
    console.print(f"chosen: {result.chosen}", highlight=False)
    console.print(f"artifact: {result.artifact}\nserve it: canao serve {result.artifact}", highlight=False)


@command()
def evaluate(
    model: Path = typer.Option(..., help="Checkpoint directory (canao or Hugging Face layout)."),
    task: str = typer.Option(..., help=TASK_HELP),
    data: Path = typer.Option(..., help="Evaluation file in the task's standard format."),
    predictions: Optional[Path] = typer.Option(None, help="Write predictions here (SQuAD: {id: answer})."),
    max_length: int = typer.Option(384, min=8),
    squad_v2: bool = typer.Option(False, help="SQuAD v2.0 no-answer scoring."),
    runtime: Runtime = typer.Option(Runtime.pytorch, help="pytorch, or compiled (compile for this CPU, score it)."),
    precision: Precision = typer.Option(Precision.FP32, help="Precision of the compiled runtime. " + PRECISION_HELP),
) -> None:
    """Print a checkpoint's official task metrics on a data file."""
    from canao.storage import check_output_path, write_json_atomically
    from canao.train.evaluate import evaluate_checkpoint

    if predictions is not None:
        check_output_path(predictions, "--predictions")  # before the evaluation, not after it

    metrics, preds = evaluate_checkpoint(
        model, task, data, max_length=max_length, version_2=squad_v2, runtime=runtime.value, precision=precision
    )
    console.print(json.dumps(metrics, indent=2))
    if predictions is not None and preds is not None:
        write_json_atomically(predictions, preds)
        console.print(f"wrote {predictions}")


@command()
def search(
    teacher: Path = typer.Option(..., help="Checkpoint fine-tuned on the task (the supernet starts from it)."),
    task: str = typer.Option(..., help="sst2, mrpc, qnli or squad."),
    train: Optional[Path] = typer.Option(None, help="Training file (default: the bundled sample where one ships)."),
    dev: Optional[Path] = typer.Option(None, help="Held-out file the members are scored on (never the test set)."),
    profile: list[Path] = typer.Option(..., help="Device profile (canao profile); one per precision searched."),
    latency_ms: float = typer.Option(..., help="Latency budget (ms, predicted by the profile)."),
    out: Path = typer.Option(Path("search-run"), help="Run directory (supernet, trials.sqlite, outputs); resumed."),
    space: Optional[Path] = typer.Option(None, help="Search space JSON (default: the space around the teacher)."),
    precision: list[Precision] = typer.Option([], help="Precisions to search (default: the space's)."),
    controller: str = typer.Option(DEFAULT_CONTROLLER, help=CONTROLLER_HELP),
    evaluations: int = typer.Option(100, min=1, max=1_000_000),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (>= 0)."),
    batch: int = typer.Option(4, min=1, max=1024, help="Candidates per round (fixed: results do not depend on it)."),
    cost: str = typer.Option("latency", help="latency (compiler-aware), or flops (the proxy, for comparison)."),
    supernet_epochs: float = typer.Option(1.0),
    supernet_steps: Optional[int] = typer.Option(None, min=1),
    supernet_lr: float = typer.Option(2e-4, min=1e-7, max=1.0),
    supernet_focus: float = typer.Option(
        1.5,
        min=0.0,
        help="Train the supernet on random members predicted within this multiple of the budget (0: all).",
    ),
    eval_examples: Optional[int] = typer.Option(None, min=1, help="Score members on the first N held-out examples."),
    measure_front: bool = typer.Option(True, help="Compile and time the front's members on the profile's device."),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    latency_margin: float = typer.Option(
        1.0, min=0.0, help="Unmeasured, keep prediction + this many x its uncertainty under the budget."
    ),
    workers: int = typer.Option(1, min=1, max=4096, help="Score members on this many Ray actors (same results)."),
    ray_address: Optional[str] = typer.Option(None, help="Join this Ray cluster instead of starting a local one."),
) -> None:
    """Search the architecture under a latency budget: supernet (KD, sandwich rule), controller, Pareto front."""
    from canao.data.bundled import task_files
    from canao.search.run import SearchRunConfig, search_run

    train, dev = task_files(task, train, dev)
    if dev is None:
        raise typer.BadParameter("the search scores members on held-out data: pass --dev FILE.")
    config = SearchRunConfig(
        teacher,
        task,
        train,
        dev,
        tuple(profile),
        latency_ms,
        out,
        space=space,
        precisions=tuple(p.value for p in precision),
        controller=controller,
        evaluations=evaluations,
        seed=seed,
        batch=batch,
        cost=cost,
        supernet_epochs=supernet_epochs,
        supernet_steps=supernet_steps,
        supernet_lr=supernet_lr,
        supernet_focus=supernet_focus,
        eval_examples=eval_examples,
        measure_front=measure_front,
        device=device,
        latency_margin=latency_margin,
        workers=workers,
        ray_address=ray_address,
    )
    with progress_reporter("supernet and search") as update:
        result = search_run(config, lambda stage, done, total, value: update(done, total, None, stage))
    table = _table(
        f"Pareto front ({len(result.search.trials)} evaluations, budget {latency_ms:g} ms)",
        ("candidate", "accuracy", "predicted ms", "measured ms"),
    )
    from canao.search.candidates import Candidate

    for trial in result.search.front:
        c = Candidate.from_dict(trial.candidate)
        measured = result.measured_ms.get(c.key())
        table.add_row(
            c.describe(),
            f"{trial.accuracy:.2f}",
            f"{trial.latency_ms:.2f}",
            "" if measured is None else f"{measured:.2f}",
        )
    console.print(table)
    if result.best is None:
        console.print("no evaluated member met the budget; see the front above")
        raise typer.Exit(code=3)
    console.print(
        f"chosen: {result.best.describe()}; wrote {out / 'best_arch.json'}, {out / 'search.json'}, {out / 'pareto.png'}"
    )


@command("export")
def export_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory (from `canao compile`, `distill` or `optimize`)."),
    target: str = typer.Option("linux-x86_64", help="linux-x86_64, linux-aarch64 or android-arm64."),
    out: Path = typer.Option(Path("export"), help="Directory to write the C package to."),
    prebuilt: bool = typer.Option(True, help="Build the libraries for the target when its compiler is here."),
    force: bool = typer.Option(False, help="Move a directory canao did not write at --out aside (never deleted)."),
) -> None:
    """Export an artifact as a dependency-free C package (library, header, weights, tokenizer, Makefile)."""
    from canao.export.package import export_artifact

    result = export_artifact(artifact, target, out, prebuilt=prebuilt, force=force)
    table = _table(f"exported {artifact} for {result.target} ({', '.join(result.levels)}) into {out}", ("file", "KB"))
    for name, size in sorted(result.files.items()):
        table.add_row(name, f"{size / 1024:.1f}")
    console.print(table)
    if result.prebuilt:
        built = ", ".join(result.prebuilt)
    else:
        built = "none (--no-prebuilt)" if not prebuilt else f"none (no compiler for {result.target} here)"
    console.print(f"prebuilt: {built}. Build it elsewhere with `make` in {out} (docs/deploy.md).")


@command("compress")
def compress_cmd(
    model: Path = typer.Argument(..., help="Checkpoint directory (Hugging Face layout, e.g. a fine-tuned model/)."),
    out: Path = typer.Option(..., help="Directory to write the compressed checkpoint to."),
    weights: str = typer.Option("int8", help="int8 (per-row scales, 1/4 size) or bf16 (1/2 size)."),
    force: bool = typer.Option(False, help="Move a directory canao did not write at --out aside (never deleted)."),
) -> None:
    """Shrink a checkpoint's weights (int8 or bf16) for shipping; every canao loader reads the result as is."""
    from canao.models.compressed import compress_checkpoint

    result = compress_checkpoint(model, out, weights, force=force)
    console.print(
        f"wrote {out}: {result.scheme} weights, "
        f"{result.bytes_before / 1e6:.1f} MB -> {result.bytes_after / 1e6:.1f} MB, "
        f"largest weight error {result.max_abs_error:.2e}; check its accuracy with `canao evaluate --model {out}`.",
        highlight=False,
    )


@command("train-lm")
def train_lm(
    data: Optional[Path] = typer.Option(None, help="UTF-8 text corpus (default: bundled tinyshakespeare sample)."),
    out: Path = typer.Option(Path("lm"), help="Run directory (checkpoint, model/, metrics.json); resumed."),
    preset: str = typer.Option("tiny", help="Decoder size: tiny or small."),
    max_steps: int = typer.Option(2000, min=1),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (>= 0)."),
) -> None:
    """Train a byte-level BPE tokenizer and a small GPT-2-style decoder from scratch on a text corpus."""
    from canao.data.bundled import bundled_text_sample
    from canao.train.lm import train_language_model

    with progress_reporter(f"training the {preset} decoder", loss=True) as update:
        result = train_language_model(
            data or bundled_text_sample(),
            out,
            preset=preset,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            progress=lambda step, total, loss: update(step, total, loss),
        )
    console.print(
        f"{result.steps} steps; validation perplexity {result.metrics.get('perplexity', float('nan')):.2f} "
        f"(unigram baseline {result.metrics.get('unigram_perplexity', float('nan')):.2f}); "
        f"model in {out / 'model'}"
    )


@command("arch")
def arch_cmd(
    arch: Path = typer.Option(..., help="ArchSpec JSON file."),
    seq_len: Optional[int] = typer.Option(
        None, min=1, max=65536, help="Sequence length for FLOPs (default: 128, or max_positions if shorter)."
    ),
) -> None:
    """Validate an ArchSpec JSON file and print its size."""
    from canao.arch import read_arch

    spec = read_arch(arch)
    seq_len = seq_len or min(128, spec.max_positions)
    if seq_len > spec.max_positions:
        raise SpecError(
            f"`--seq-len <= max_positions` must hold, but got ({seq_len=}, max_positions={spec.max_positions}): "
            "the model cannot take that many tokens."
        )
    console.print(spec.describe())
    console.print(json.dumps({"params": spec.num_params(), f"gflops@{seq_len}": spec.flops(seq_len) / 1e9}))


def run() -> None:
    """Entry point of the `canao` script and `python -m canao`."""
    app()


if __name__ == "__main__":
    run()
