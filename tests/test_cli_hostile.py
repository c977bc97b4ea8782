"""User input that used to end in a traceback, an 'internal error', a late failure or a silent exit 0: each is
now one line and exit 2, refused before the work (issue 40's hostile pass)."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from canao.arch import ArchSpec
from canao.cli import app

runner = CliRunner()
SPEC = ArchSpec.uniform("encoder", vocab_size=100, max_positions=256, hidden=32, num_layers=2, heads=4)


def _one_line_exit_2(result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert words in result.output, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


@pytest.fixture
def files(tmp_path):
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "arch.json").write_text(SPEC.to_json())
    return tmp_path


def test_arch_refuses_more_tokens_than_the_model_takes(files):
    result = runner.invoke(app, ["arch", "--arch", str(files / "arch.json"), "--seq-len", "60000"])
    _one_line_exit_2(result, "max_positions=256")


def test_a_binary_config_json_is_named(files):
    (files / "model").mkdir()
    (files / "model" / "config.json").write_bytes(bytes(range(256)))
    result = runner.invoke(app, ["compile", "--model", str(files / "model"), "--out", str(files / "art")])
    _one_line_exit_2(result, "config.json: not valid JSON")


@pytest.mark.parametrize("name", ["binary.json", "deep.json"])
def test_unreadable_profiles_are_named(files, name):
    args = ["--arch", str(files / "arch.json"), "--profile", str(files / name), "--no-measure"]
    _one_line_exit_2(runner.invoke(app, ["latency", *args]), f"{name}: corrupt profile")
    result = runner.invoke(app, ["profile", "--out", str(files / name), "--reps", "5", "--seq-lens", "8"])
    _one_line_exit_2(result, f"{name}: corrupt profile")


def test_search_checks_its_settings_before_training(files):
    args = ["--teacher", str(files), "--task", "sst2", "--profile", str(files / "deep.json"), "--latency-ms", "5"]
    _one_line_exit_2(runner.invoke(app, ["search", *args, "--controller", "bogus"]), "`controller` must be one of")
    _one_line_exit_2(runner.invoke(app, ["search", *args, "--cost", "bogus"]), "`cost` must be one of")


def test_seeds_are_not_negative():
    result = runner.invoke(app, ["generate", "--prompt", "a", "--seed", "-1"])
    assert result.exit_code == 2 and "greater than or equal to 0" in result.output, result.output


def test_output_paths_are_checked_before_the_work(files):
    (files / "a-file").write_text("x")
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(files),
            "--task",
            "sst2",
            "--data",
            "x",
            "--predictions",
            str(files / "a-file" / "p.json"),
        ],
    )
    _one_line_exit_2(result, "is not a directory; pass another path for --predictions")
    result = runner.invoke(app, ["teacher", "--out", str(files / "a-file")])
    _one_line_exit_2(result, "exists and is not a directory; pass a directory for --out")


def test_a_full_disk_while_writing_an_artifact_is_one_line(files, monkeypatch):
    import safetensors.numpy
    from safetensors import SafetensorError

    def full_disk(*_args, **_kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    result = runner.invoke(app, ["compile", "--out", str(files / "art")])
    _one_line_exit_2(result, "cannot write the artifact's weights")
    assert not (files / "art").exists() and not list(files.glob(".art*"))  # nothing half-written is left


def test_squad_training_defaults_to_its_window_length(tmp_path):
    from canao.cli import _train_config

    common = dict(out=tmp_path, epochs=1.0, batch_size=2, grad_accum=1, lr=1e-4, max_steps=1, seed=0, save_every_s=9)
    assert _train_config(task="squad", max_length=None, **common).max_length == 384
    assert _train_config(task="sst2", max_length=None, **common).max_length == 128
    assert _train_config(task="squad", max_length=256, **common).max_length == 256


def test_messages_are_printed_as_text_not_markup(files, monkeypatch):
    import canao.arch

    result = runner.invoke(app, ["arch", "--arch", str(files / "[bold]missing[/].json")])
    _one_line_exit_2(result, "[bold]missing[/].json")

    def broken(path):
        raise TypeError("a mistake [with brackets]")

    monkeypatch.setattr(canao.arch, "read_arch", broken)
    for verbose in ([], ["--verbose"]):
        result = runner.invoke(app, [*verbose, "arch", "--arch", str(files / "arch.json")])
        assert result.exit_code == 1 and "[bold red]" not in result.output, result.output
        assert "a mistake [with brackets]" in result.output


def test_written_files_are_readable_by_others(tmp_path):
    from canao.compiler.artifact import write_artifact
    from canao.models import build_model

    weights = {k: v.detach().numpy() for k, v in build_model(SPEC, "backbone").state_dict().items()}
    write_artifact(tmp_path / "art", SPEC, weights, task="backbone")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "art").iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes
