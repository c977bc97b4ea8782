"""Writing outputs loses nothing: atomic JSON, directories swapped whole, a user's directory never replaced."""

from __future__ import annotations

import json
import os
import stat

import pytest

from canao.storage import ExistingDirectoryError, prepare_target, write_json_atomically


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
