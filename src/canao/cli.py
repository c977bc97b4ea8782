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
    out: Optional[Path] = typer.Option(None, help="Directory to write report.json into."),
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
        console.print(f"wrote {out / 'report.json'}")


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
        (f"PyTorch eager latency, batch 1, seq {report.seq_len}, {report.threads} threads",
         f"{lat.median_ms:.2f} ms median, {lat.p90_ms:.2f} ms p90 ({lat.runs} runs)"),
        ("machine", f"{report.machine.cpu_model} ({report.machine.simd_level})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


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
