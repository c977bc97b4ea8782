"""End-to-end CLI runs: version, info, arch, and the teacher report on a few questions."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from canao.arch import ArchSpec
from canao.cli import app

runner = CliRunner()


def test_version_and_info():
    assert "canao 0.1.0" in runner.invoke(app, ["version"]).output
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "SIMD level" in result.output and "fingerprint" in result.output


def test_arch_command_validates(tmp_path):
    spec = ArchSpec.uniform("encoder", vocab_size=100, max_positions=16, hidden=32, num_layers=2, heads=4)
    (tmp_path / "good.json").write_text(spec.to_json())
    result = runner.invoke(app, ["arch", "--arch", str(tmp_path / "good.json")])
    assert result.exit_code == 0 and "encoder L2 H32" in result.output
    (tmp_path / "bad.json").write_text(json.dumps({**spec.to_dict(), "hidden": -1}))
    result = runner.invoke(app, ["arch", "--arch", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "hidden >= 1" in result.output


def test_teacher_report_runs_end_to_end(tmp_path):
    result = runner.invoke(app, ["teacher", "--max-questions", "12", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["retrieval"]["questions"] == 12
    assert report["max_abs_diff_vs_transformers"] < 1e-4
    assert report["params"] == 22_713_216
    fp32, bf16 = report["compiled"]["fp32"], report["compiled"]["bf16"]
    assert fp32["max_abs_diff"] < 1e-4
    assert 1e-4 < bf16["max_abs_diff"] < 0.1 and bf16["latency"]["median_ms"] > 0
    assert abs(bf16["retrieval"]["top1"] - report["retrieval"]["top1"]) <= 2 / 12  # a question may flip
    page = (tmp_path / "report.html").read_text()
    assert 'src="latency.png"' in page and "canao bf16 (" in page and "encoder L6 H384" in page
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # all-MiniLM-L6-v2 is a semantic-search model: it must beat chance clearly.
    assert report["retrieval"]["top1"] > report["retrieval"]["chance_top1"] + 0.2


def test_teacher_report_bad_squad_path(tmp_path):
    result = runner.invoke(app, ["teacher", "--squad", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "file not found" in result.output


def test_python_dash_m_canao_is_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "canao", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("canao ")


def test_user_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "dir.json").mkdir()
    for path, message in (
        (tmp_path / "binary.json", "not UTF-8"),
        (tmp_path / "deep.json", "does not parse"),
        (tmp_path / "dir.json", "is a directory"),
        (tmp_path / "none.json", "file not found"),
    ):
        result = runner.invoke(app, ["arch", "--arch", str(path)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    result = runner.invoke(app, ["compile", "--precision", "fp8", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "fp32" in result.output and "int8" in result.output
    result = runner.invoke(app, ["profile", "--space", str(tmp_path / "binary.json")])
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_a_bug_is_reported_as_one_line_and_traced_with_verbose(monkeypatch, tmp_path):
    import canao.arch

    def broken(path):
        raise TypeError("an internal mistake")

    monkeypatch.setattr(canao.arch, "read_arch", broken)
    result = runner.invoke(app, ["arch", "--arch", str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "internal error" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["--verbose", "arch", "--arch", str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "Traceback" in result.output and "an internal mistake" in result.output


def test_progress_lines_leave_out_the_loss_of_a_pass_that_has_none(capsys, monkeypatch):
    """Distillation's teacher-cache pass reports NaN for its loss: the log must not read like a diverged run."""
    import io

    from rich.console import Console

    from canao import cli

    with cli.progress_reporter("distill", total=4, loss=True, every_s=0.0) as update:
        update(1, 4, float("nan"))
        update(2, 4, 0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("distill: 1/4 (25%), ") and "loss" not in lines[0]
    assert "loss 0.5000" in lines[1]

    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    monkeypatch.setattr(cli, "console", terminal)
    with cli.progress_reporter("distill", total=2, loss=True) as update:
        update(1, 2, float("nan"))
        update(2, 2, 0.25)
    drawn = terminal.file.getvalue()
    assert "nan" not in drawn and "loss 0.2500" in drawn
