"""The teacher report as a page people read: report.html with a latency chart (latency.png) beside report.json.

The chart puts PyTorch eager and the compiled fp32 and bf16 builds side by
side (median bars, p90 whiskers), because that comparison is what the
report is for; the tables repeat every figure with its conditions.

Example::

    write_teacher_report(make_teacher_report(TeacherReportConfig()), Path("out"))
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from canao.report.teacher import TeacherReport
from canao.storage import write_json_atomically


def _latency_rows(report: TeacherReport) -> list[tuple[str, float, float, float]]:
    """(runtime, median ms, p90 ms, max |diff| vs PyTorch) per timed runtime."""
    rows = [("PyTorch eager", report.latency.median_ms, report.latency.p90_ms, 0.0)]
    for precision, result in report.compiled.items():
        rows.append(
            (
                f"canao {precision} ({report.compiled_simd})",
                result.latency.median_ms,
                result.latency.p90_ms,
                result.max_abs_diff,
            )
        )
    return rows


def plot_latency(report: TeacherReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _latency_rows(report)
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=120)
    names, medians = [r[0] for r in rows], [r[1] for r in rows]
    whiskers = [[0.0] * len(rows), [max(r[2] - r[1], 0.0) for r in rows]]
    colours = ["#9e9e9e", "#3b7dd8", "#1a9e5c", "#d8893b", "#8e3bd8"][: len(rows)]
    bars = ax.barh(names, medians, xerr=whiskers, color=colours, capsize=3)
    for bar, (_, median, p90, _) in zip(bars, rows):
        ax.text(max(median, p90), bar.get_y() + bar.get_height() / 2, f"  {median:.1f} ms", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"ms per forward pass (batch 1, {report.seq_len} tokens, {report.threads} threads; bar: median, whisker: p90)",
        fontsize=8,
    )
    ax.set_xlim(0, max(r[2] for r in rows) * 1.25)
    ax.set_title(f"{report.spec_summary} on {report.machine.cpu_model}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td class=v>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>{html.escape(title)}</h2><table>{body}</table>"


def render_html(report: TeacherReport, chart_name: str) -> str:
    r = report.retrieval
    parity = (
        "n/a (transformers not installed)"
        if report.max_abs_diff_vs_transformers is None
        else f"{report.max_abs_diff_vs_transformers:.2e}"
    )
    model = [
        ("architecture", report.spec_summary),
        ("parameters", f"{report.params / 1e6:.2f} M"),
        (f"GFLOPs at {report.seq_len} tokens", f"{report.gflops:.2f}"),
        ("max |canao - transformers| (hidden states)", parity),
    ]
    retrieval = [
        ("questions", str(r.questions)),
        ("top-1, PyTorch", f"{100 * r.top1:.1f} %"),
        ("MRR, PyTorch", f"{r.mrr:.3f}"),
    ]
    for precision, result in report.compiled.items():
        if result.retrieval is not None:
            retrieval += [
                (f"top-1, compiled {precision} build", f"{100 * result.retrieval.top1:.1f} %"),
                (f"MRR, compiled {precision} build", f"{result.retrieval.mrr:.3f}"),
            ]
    retrieval += [
        ("word-overlap baseline top-1", f"{100 * r.overlap_top1:.1f} %"),
        ("chance top-1", f"{100 * r.chance_top1:.1f} %"),
    ]
    eager = report.latency.median_ms
    latency = [
        (name, f"{median:.2f} ms median, {p90:.2f} ms p90, {eager / median:.2f}x eager, max |diff| {diff:.1e}")
        for name, median, p90, diff in _latency_rows(report)
    ]
    machine = [
        ("CPU", report.machine.cpu_model),
        ("SIMD level", report.machine.simd_level),
        ("threads", str(report.threads)),
    ]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>canao teacher report</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;color:#222}}
table{{border-collapse:collapse;margin-bottom:1rem}}td{{border-bottom:1px solid #ddd;padding:.25rem .6rem}}
td.v{{text-align:right;font-variant-numeric:tabular-nums}}h2{{font-size:1.05rem;margin-top:1.4rem}}</style></head>
<body><h1>Teacher report: {html.escape(report.spec_summary)}</h1>
<p>Batch-1 latency of PyTorch eager and of the model compiled by canao for this CPU in each matrix-product
precision shown, timed in alternating rounds; zero-shot SQuAD answer-sentence retrieval with the PyTorch
model and with compiled builds.</p>
<img src="{html.escape(chart_name)}" alt="latency chart" style="max-width:100%">
{_table("Latency", latency)}{_table("Model", model)}{_table("SQuAD answer-sentence retrieval", retrieval)}
{_table("Machine", machine)}
</body></html>
"""


def write_teacher_report(report: TeacherReport, out: Path) -> Path:
    """Write out/report.json, out/latency.png and out/report.html; returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "report.json", json.loads(report.to_json()))
    chart = plot_latency(report, out / "latency.png")
    page = out / "report.html"
    page.write_text(render_html(report, chart.name))
    return page
