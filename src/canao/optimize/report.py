"""RUN/report.json and RUN/report.html: what `canao optimize` chose, why, and what it measured.

The page is self-contained (the plot is an inline PNG, no scripts, no links out), so it can be mailed or
opened from an artifact store: the Pareto front with the budget, the choice and the teacher; the chosen
ArchSpec; accuracy and latency of student and teacher on each runtime from one timing run; the per-op time
before and after the fusion passes; the latency predictor's error on every measured model; the wall time of
each stage. report.json holds the same figures (REPORT_SCHEMA names its keys).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Optional

from canao.storage import write_json_atomically, write_text_atomically

REPORT_VERSION = 1
REPORT_SCHEMA = {
    "version": int,
    "status": str,  # "done" or "infeasible"
    "config": dict,
    "device": str,
    "budget_ms": float,
    "budget_rule": str,
    "teacher": dict,
    "chosen": (dict, type(None)),
    "binding": (str, type(None)),
    "accuracy_latency": list,
    "predictor_error": list,
    "per_op": (dict, type(None)),
    "stages": list,
    "artifact": (str, type(None)),
}


def _front_and_trials(search_json: Optional[str]) -> tuple[list[dict], list[dict]]:
    if not search_json or not Path(search_json).exists():
        return [], []
    data = json.loads(Path(search_json).read_text())
    trials_db = Path(search_json).parent / "trials.sqlite"
    trials: list[dict] = []
    if trials_db.exists():
        import sqlite3

        with sqlite3.connect(trials_db) as db:
            try:
                rows = db.execute("SELECT latency_ms, accuracy FROM trials").fetchall()
            except sqlite3.Error:
                rows = []
        trials = [{"latency_ms": float(a), "accuracy": float(b)} for a, b in rows]
    return list(data.get("front", [])), trials


def build_report(state: Any) -> dict[str, Any]:
    """The report's figures from the stages' outputs (no measuring here)."""
    c, out = state.config, state.outputs
    teacher, search = out.get("teacher", {}), out.get("search", {})
    evaluation, profile = out.get("evaluate", {}), out.get("profile", {})
    metric = c.metric
    status = "done" if out.get("package", {}).get("artifact") else "infeasible"
    timing = evaluation.get("timing", {})
    rows: list[dict[str, Any]] = []
    teacher_metric = teacher.get("metrics", {}).get(metric)
    student_metric = out.get("distill", {}).get("metrics", {}).get(metric)
    for role, value in (("teacher", teacher_metric), ("student", student_metric)):
        if role == "student" and not evaluation.get("precisions"):
            continue
        for runtime in ("pytorch", "onnxruntime"):
            ms = timing.get(runtime, {}).get(role)
            if isinstance(ms, (int, float)):
                rows.append({"model": role, "runtime": runtime, "precision": "fp32", metric: value, "ms": ms})
        for precision, ms in timing.get("canao", {}).get(role, {}).items():
            accuracy = value if role == "teacher" else evaluation["precisions"][precision].get("metric")
            rows.append({"model": role, "runtime": "canao", "precision": precision, metric: accuracy, "ms": ms})
    errors: list[dict[str, Any]] = []
    if search.get("search_json") and Path(search["search_json"]).exists():
        for row in json.loads(Path(search["search_json"]).read_text()).get("front", []):
            if row.get("measured_ms") is not None:
                errors.append(
                    {
                        "model": "front member",
                        "precision": row["candidate"]["precision"],
                        "predicted_ms": row["latency_ms"],
                        "measured_ms": row["measured_ms"],
                    }
                )
    for role in ("teacher", "student"):
        for precision, measured in timing.get("canao", {}).get(role, {}).items():
            predicted = timing.get("predicted", {}).get(role, {}).get(precision)
            if predicted is not None:
                errors.append(
                    {"model": role, "precision": precision, "predicted_ms": predicted, "measured_ms": measured}
                )
    for e in errors:
        e["error_pct"] = 100 * (e["predicted_ms"] - e["measured_ms"]) / e["measured_ms"]
    stages = [
        {"stage": name, "wall_s": state.wall_s.get(name, 0.0), "reused": name in state.reused} for name in state.outputs
    ]
    return {
        "version": REPORT_VERSION,
        "status": status,
        "config": c.to_dict(),
        "device": str(timing.get("device") or profile.get("device", "")),
        "budget_ms": float(search.get("budget_ms", 0.0)),
        "budget_rule": str(search.get("budget_rule", "")),
        "metric": metric,
        "teacher": {"model": teacher.get("model"), "spec": teacher.get("spec"), "metrics": teacher.get("metrics")},
        "chosen": None
        if status != "done"
        else {
            **search["chosen"],
            "precision": evaluation.get("chosen_precision"),
            "precision_rule": evaluation.get("precision_rule"),
            "describe": search.get("chosen_describe"),
            # the shipped build's own scores (its precision, compiled); the PyTorch fp32 student's beside them
            "metrics": evaluation.get("precisions", {}).get(evaluation.get("chosen_precision"), {}).get("metrics"),
            "fp32_pytorch_metrics": out.get("distill", {}).get("metrics"),
        },
        "binding": search.get("binding") or (None if status == "done" else evaluation.get("precision_rule")),
        "accuracy_latency": rows,
        "predictor_error": errors,
        "per_op": evaluation.get("per_op"),
        "stages": stages,
        "artifact": out.get("package", {}).get("artifact"),
        "search_evaluations": search.get("evaluations"),
    }


def plot_front(report: dict[str, Any], search_json: Optional[str]) -> bytes:
    """PNG: trials and front (inherited accuracy vs predicted latency), the budget, teacher and final student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front, trials = _front_and_trials(search_json)
    metric = report["metric"]
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
    if trials:
        ax.scatter(
            [t["latency_ms"] for t in trials],
            [t["accuracy"] for t in trials],
            s=9,
            color="#b0b0b0",
            label="evaluated (supernet weights)",
        )
    if front:
        ax.plot(
            [t["latency_ms"] for t in front],
            [t["accuracy"] for t in front],
            "-o",
            color="#3b7dd8",
            markersize=4,
            label="Pareto front",
        )
    if report["budget_ms"]:
        ax.axvline(report["budget_ms"], color="#d8893b", linestyle="--", label=f"budget {report['budget_ms']:.2f} ms")
    for row in report["accuracy_latency"]:
        if row["runtime"] != "canao" or row.get(metric) is None:
            continue
        teacher = row["model"] == "teacher"
        chosen = not teacher and report["chosen"] and row["precision"] == report["chosen"]["precision"]
        ax.scatter(
            [row["ms"]],
            [row[metric]],
            s=110 if chosen else 40,
            marker="*" if chosen else ("s" if teacher else "^"),
            color="#1a9e5c" if chosen else ("#8e3bd8" if teacher else "#5fbf8f"),
            zorder=5,
            label=f"{row['model']} canao {row['precision']} (measured){' - chosen' if chosen else ''}",
        )
    ax.set_xlabel("latency (ms): predicted for the search, measured for teacher and student")
    ax.set_ylabel(f"dev {metric}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _table(title: str, head: list[str], rows: list[list[Any]], level: int = 2, css: str = "") -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        return html.escape("" if value is None else str(value))

    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    heading = f"<h{level}>{html.escape(title)}</h{level}>"
    return f"{heading}<table class='{css}'><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _per_op_tables(per_op: dict[str, list[dict]], top: int = 12) -> str:
    """Before and after the optional fusions: totals, then the costliest op kinds of each build."""
    totals = {name: sum(g["ms"] for g in groups) for name, groups in per_op.items()}
    saved = 100 * (1 - totals["fused"] / totals["unfused"]) if totals.get("unfused") else 0.0
    parts = [
        f"<h2>Per-op time of the chosen build, before and after the optional fusions</h2><p id='fusion-total'>"
        f"Sum of op times: {totals.get('unfused', 0):.2f} ms without the QKV merge, GEMM epilogue and "
        f"add+LayerNorm fusions, {totals.get('fused', 0):.2f} ms with them ({saved:.0f}% saved). Ops of one kind "
        "are summed over the layers (attention is fused in both builds).</p>"
    ]
    for name, title in (("unfused", "before (unfused)"), ("fused", "after (fused, as deployed)")):
        groups = per_op.get(name, [])
        rows = [[g["name"], g["count"], g["ms"], g["gflops_per_s"] or None] for g in groups[:top]]
        rest = groups[top:]
        if rest:
            rows.append(
                [f"{len(rest)} other op kinds", sum(g["count"] for g in rest), sum(g["ms"] for g in rest), None]
            )
        parts.append(_table(title, ["op", "count", "ms", "GFLOP/s"], rows, level=3))
    return "".join(parts)


def render_html(report: dict[str, Any], png: bytes) -> str:
    metric = report["metric"]
    chosen = report["chosen"]
    teacher_metric = (report["teacher"]["metrics"] or {}).get(metric, float("nan"))
    summary = [
        ["status", report["status"]],
        ["task", report["config"]["task"]],
        ["device", report["device"]],
        ["latency budget", f"{report['budget_ms']:.2f} ms ({report['budget_rule']})"],
        ["teacher", f"{report['teacher']['model']} ({teacher_metric:.2f} {metric})"],
    ]
    if chosen:
        summary += [
            ["chosen architecture", chosen["describe"]],
            ["chosen precision", f"{chosen['precision']} ({chosen['precision_rule']})"],
            ["artifact", f"{report['artifact']}  (serve it: canao serve {report['artifact']})"],
        ]
    if report["binding"]:
        summary.append(["binding constraint", report["binding"]])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>canao optimize report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}h2{font-size:17px}"
        "table.summary td{text-align:left}h3{font-size:14px}",
        "</style></head><body><h1>canao optimize</h1>",
        _table("Summary", ["", ""], summary, css="summary"),
        "<h2>Accuracy vs latency</h2>",
        f"<img id='front' alt='Pareto front' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
    ]
    if chosen:
        spec = chosen["spec"]
        parts.append(
            _table(
                f"Chosen ArchSpec (hidden {spec['hidden']}, vocabulary {spec['vocab_size']}, "
                f"{spec['max_positions']} positions; arch.json in the artifact)",
                ["layer", "heads", "head dim", "FFN"],
                [[i + 1, layer["heads"], layer["head_dim"], layer["ffn"]] for i, layer in enumerate(spec["layers"])],
            )
        )
    parts.append(
        _table(
            "Teacher and student, one timing run (median ms, batch 1)",
            ["model", "runtime", "precision", f"dev {metric}", "ms"],
            [[r["model"], r["runtime"], r["precision"], r.get(metric), r["ms"]] for r in report["accuracy_latency"]],
        )
    )
    if report["per_op"]:
        parts.append(_per_op_tables(report["per_op"]))
    parts.append(
        _table(
            "Latency predictor on the measured models",
            ["model", "precision", "predicted ms", "measured ms", "error %"],
            [
                [e["model"], e["precision"], e["predicted_ms"], e["measured_ms"], e["error_pct"]]
                for e in report["predictor_error"]
            ],
        )
    )
    parts.append(
        _table(
            "Stages (wall time)",
            ["stage", "seconds", "reused from an earlier run"],
            [[s["stage"], s["wall_s"], "yes" if s["reused"] else ""] for s in report["stages"]],
        )
    )
    parts.append("</body></html>")
    return "".join(parts)


def write_report(state: Any) -> tuple[Path, Path]:
    """Write RUN/report.json and RUN/report.html (each atomically); returns their paths."""
    report = build_report(state)
    out = Path(state.out)
    json_path, html_path = out / "report.json", out / "report.html"
    write_json_atomically(json_path, report)
    page = render_html(report, plot_front(report, state.outputs.get("search", {}).get("search_json")))
    write_text_atomically(html_path, page)
    return json_path, html_path
