"""Writing outputs loses nothing: atomic JSON, directories swapped whole, a user's directory never replaced."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from canao.storage import (
    LOCK_FILE,
    ExistingDirectoryError,
    RunBusyError,
    exclusive,
    prepare_target,
    write_json_atomically,
)


def _never_ours(directory):
    return None


def test_json_is_written_whole_and_readable_by_others(tmp_path):
    write_json_atomically(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"k": [1, 2]}
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "x.json").st_mode) == 0o644
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]  # no temp file left


def test_a_users_directory_is_refused_then_moved_aside_never_deleted(tmp_path):
    target = tmp_path / "ud"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(ExistingDirectoryError, match="--force"):
        prepare_target(target, is_ours=_never_ours, force=False)
    assert (target / "notes.txt").read_text() == "precious"
    prepare_target(target, is_ours=_never_ours, force=True)
    assert not target.exists() and (tmp_path / "ud.old-1" / "notes.txt").read_text() == "precious"


def test_missing_empty_or_own_directories_may_be_written(tmp_path):
    prepare_target(tmp_path / "new", is_ours=_never_ours, force=False)
    (tmp_path / "empty").mkdir()
    prepare_target(tmp_path / "empty", is_ours=_never_ours, force=False)
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "arch.json").write_text("{}")
    prepare_target(tmp_path / "ours", is_ours=lambda d: [], force=False)


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ExistingDirectoryError, match="not a directory canao wrote"):
        prepare_target(tmp_path / "f", is_ours=_never_ours, force=False)


# Holds `exclusive(argv[1])` and says so, then sleeps until killed.
HOLDER = """
import sys, time
from pathlib import Path
from canao.storage import exclusive
with exclusive(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold_in_another_process(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_one_process_per_run_directory_and_a_dead_owner_is_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    holder = _hold_in_another_process(run)
    try:
        with pytest.raises(RunBusyError, match=f"pid {holder.pid} on .*is using this run directory"):
            with exclusive(run):
                raise AssertionError("entered a directory another process holds")
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without cleaning up: its record stays, the kernel lock goes
        holder.wait()
    assert (run / LOCK_FILE).exists()
    with caplog.at_level(logging.WARNING), exclusive(run):
        with exclusive(run):  # re-entrant in one process
            pass
    assert f"taking over the lock left by pid {holder.pid}" in caplog.text
    assert not (run / LOCK_FILE).exists()  # released and removed


def test_training_refuses_a_directory_in_use(tmp_path):
    from canao.data.bundled import SAMPLES_DIR
    from canao.train.finetune import FinetuneConfig, finetune
    from tests.hf_factories import save_tiny_bert_with_tokenizer

    teacher = save_tiny_bert_with_tokenizer(tmp_path / "bert")
    holder = _hold_in_another_process(tmp_path / "run")
    try:
        config = FinetuneConfig("sst2", tmp_path / "run", max_steps=2, batch_size=4, max_length=16)
        with pytest.raises(RunBusyError, match="training run"):
            finetune(config, teacher, SAMPLES_DIR / "sst2-train-sample.tsv")
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_exclusive_per_locks_the_path_its_argument_names(tmp_path):
    from canao.storage import exclusive_per

    @exclusive_per("out", "test run", lambda out: out / "run")
    def work(step: int, out: Path) -> bool:
        return (out / "run" / LOCK_FILE).exists()

    assert work(1, tmp_path) and work(step=2, out=tmp_path)  # held while it runs, positional or keyword
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    holder = _hold_in_another_process(tmp_path / "run")
    try:
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}.*this test run"):
            work(3, out=tmp_path)
    finally:
        holder.kill()
        holder.wait()
