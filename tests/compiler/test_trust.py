"""An artifact from elsewhere never runs code: a planted library is not loaded, outside paths and symlinks are
refused, and only builds signed with this machine's key load as they are."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from canao.compiler.artifact import build_dir_name, file_digest, load_artifact, write_artifact
from canao.compiler.runtime import RuntimeLoadError
from canao.compiler.trust import KEY_FILE, SIGNATURE, TrustKeyError, config_dir, local_key, signed_here
from canao.device import resolve_simd
from tests.compiler.graphs import ENC, torch_model

IDS = [3, 4, 5, 6]

# Loads argv[1] (trusting it when argv[2] == "trust") and prints the output, or the CanaoError, as JSON.
PROBE = """
import json, sys
from canao.compiler.artifact import load_artifact
from canao.errors import CanaoError
try:
    out = load_artifact(sys.argv[1], trust=sys.argv[2] == "trust").model.run([3, 4, 5, 6])["start_logits"]
    print(json.dumps({"output": out.tolist()}))
except CanaoError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""

# A shared library whose constructor runs at dlopen, before any symbol is looked up: it leaves a file behind.
CONSTRUCTOR_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *path = getenv("CANAO_TEST_MARKER");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) { fputs("constructor ran\n", f); fclose(f); }
}
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("trust") / "art"
    weights = {k: v.detach().numpy() for k, v in torch_model(ENC, "qa").state_dict().items()}
    write_artifact(path, ENC, weights, task="qa")
    return path, load_artifact(path).model.run(IDS)["start_logits"].tolist()


@pytest.fixture
def art(pristine, tmp_path) -> Path:
    copy = tmp_path / "art"
    shutil.copytree(pristine[0], copy)
    return copy


def _build(path: Path) -> Path:
    return path / "compiled" / build_dir_name(resolve_simd(None))


def _probe(path: Path, marker: Path, trust: bool = False, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), "trust" if trust else "check"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {}), "CANAO_TEST_MARKER": str(marker)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rewrite_manifest(build: Path, name: str, keep_signature: bool) -> None:
    """Update the checksum and size of `name`, as an attacker who replaced the file would."""
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": file_digest(build / name), "bytes": (build / name).stat().st_size}
    if not keep_signature:
        manifest.pop(SIGNATURE, None)
    (build / "manifest.json").write_text(json.dumps(manifest))


def _plant(art: Path, tmp_path: Path, keep_signature: bool) -> Path:
    """Replace the build's library by one with a constructor and update its checksum; returns the build."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the planted library")
    (tmp_path / "planted.c").write_text(CONSTRUCTOR_C)
    build = _build(art)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(build / "libmodel.so"), str(tmp_path / "planted.c")], check=True)
    _rewrite_manifest(build, "libmodel.so", keep_signature)
    return build


@pytest.mark.parametrize("keep_signature", [False, True], ids=["unsigned", "stale-signature"])
def test_a_planted_library_never_runs(art, pristine, tmp_path, keep_signature):
    build = _plant(art, tmp_path, keep_signature)
    planted = file_digest(build / "libmodel.so")
    marker = tmp_path / "marker"

    answer = _probe(art, marker)
    assert not marker.exists(), "the planted library's constructor ran"
    assert answer == {"output": pristine[1]}  # compiled again from model.safetensors, same output
    assert file_digest(build / "libmodel.so") != planted
    assert signed_here(json.loads((build / "manifest.json").read_text()))


def test_trusting_the_artifact_loads_its_library(art, tmp_path):
    """The check is what stops the planted library: with --trust-artifact it is dlopened (the test can fail)."""
    _plant(art, tmp_path, keep_signature=False)
    marker = tmp_path / "marker"
    answer = _probe(art, marker, trust=True)
    assert marker.exists()
    assert "error" in answer  # it has none of the model's functions


def test_a_build_signed_elsewhere_is_compiled_again(art, pristine, tmp_path):
    build = _build(art)
    before = (build / "manifest.json").read_text()
    other = {"CANAO_CONFIG_DIR": str(tmp_path / "other-machine")}
    assert _probe(art, tmp_path / "m", env=other) == {"output": pristine[1]}
    after = json.loads((build / "manifest.json").read_text())
    assert (build / "manifest.json").read_text() != before  # re-signed with the other key
    assert after["files"] == json.loads(before)["files"]  # the same build, deterministically
    assert not signed_here(after)  # not with ours
    # and back here: loaded as it is once signed with this key again
    assert _probe(art, tmp_path / "m") == {"output": pristine[1]}
    assert signed_here(json.loads((build / "manifest.json").read_text()))


def test_a_signed_build_is_loaded_without_rebuilding(art, caplog):
    build = _build(art)
    before = (build / "manifest.json").read_text()
    load_artifact(art)
    assert (build / "manifest.json").read_text() == before
    assert "compiling it again" not in caplog.text


@pytest.mark.parametrize("where", ["top", "build"])
def test_manifest_entries_outside_the_artifact_are_refused(art, pristine, tmp_path, where):
    secret = tmp_path / "secret.txt"
    secret.write_text("not canao's")
    directory = art if where == "top" else _build(art)
    manifest = json.loads((directory / "manifest.json").read_text())
    escape = os.path.relpath(secret, directory)
    assert escape.startswith("..")
    manifest["files"][escape] = {"sha256": file_digest(secret), "bytes": secret.stat().st_size}
    manifest["files"]["/etc/passwd"] = {"sha256": "0" * 64, "bytes": 1}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    answer = _probe(art, tmp_path / "m")
    if where == "top":  # cannot be rebuilt: refused, naming the entry
        assert answer["error"] == "RuntimeLoadError"
        assert "not a file of the directory" in answer["message"]
    else:  # a build is data that can be made again
        assert answer == {"output": pristine[1]}
        assert escape not in json.loads((directory / "manifest.json").read_text())["files"]
    assert secret.read_text() == "not canao's"


@pytest.mark.parametrize("name", ["arch.json", "model.safetensors", "tokenizer.json"])
def test_symlinked_top_files_are_refused(art, tmp_path, name):
    outside = tmp_path / f"outside-{name}"
    if (art / name).exists():
        shutil.copy2(art / name, outside)
        (art / name).unlink()
    else:
        outside.write_text("{}")
    (art / name).symlink_to(outside)
    with pytest.raises(RuntimeLoadError, match="is a symlink"):
        load_artifact(art)


@pytest.mark.parametrize("what", ["weights.bin", "libmodel.so", "build", "compiled"])
def test_symlinks_in_a_build_are_not_followed(art, pristine, tmp_path, what):
    build = _build(art)
    outside = tmp_path / "outside"
    if what in ("build", "compiled"):
        moved = build if what == "build" else build.parent
        shutil.move(str(moved), outside)
        moved.symlink_to(outside, target_is_directory=True)
    else:
        shutil.move(str(build / what), outside)
        (build / what).symlink_to(outside)
    snapshot = (
        sorted((p.relative_to(outside), p.stat().st_size) for p in outside.rglob("*"))
        if outside.is_dir()
        else outside.read_bytes()
    )
    assert _probe(art, tmp_path / "m") == {"output": pristine[1]}
    assert not _build(art).is_symlink() and not (_build(art) / what).is_symlink()
    after = (
        sorted((p.relative_to(outside), p.stat().st_size) for p in outside.rglob("*"))
        if outside.is_dir()
        else outside.read_bytes()
    )
    assert after == snapshot  # what the link pointed to is left alone


def test_an_artifact_that_cannot_be_rebuilt_in_place_says_so(art, monkeypatch):
    """A read-only artifact (a system path, a mounted share) with a foreign build: one clear line, no traceback.
    Simulated at the write (as root, permission bits do not stop writes)."""
    import canao.compiler.artifact as artifact_module

    def read_only(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    manifest = json.loads((_build(art) / "manifest.json").read_text())
    manifest.pop(SIGNATURE)
    (_build(art) / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(artifact_module, "compile_into", read_only)
    with pytest.raises(RuntimeLoadError, match="cannot be written there .Permission denied."):
        load_artifact(art)


def test_the_key_is_private_and_made_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CANAO_CONFIG_DIR", str(tmp_path / "cfg"))
    key = local_key()
    path = config_dir() / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_key() == key and len(key) == 32
    path.write_text("not a key")
    with pytest.raises(TrustKeyError, match="delete it"):
        local_key()


def test_foreign_signed_outputs_match_in_process(art, pristine, monkeypatch, tmp_path):
    monkeypatch.setenv("CANAO_CONFIG_DIR", str(tmp_path / "elsewhere"))
    out = load_artifact(art).model.run(IDS)["start_logits"]
    assert np.array_equal(out, np.array(pristine[1], dtype=out.dtype))


def test_an_unwritable_config_dir_says_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("CANAO_CONFIG_DIR", str(tmp_path / "a-file" / "canao"))  # cannot be created
    with pytest.raises(TrustKeyError, match="set CANAO_CONFIG_DIR to a writable directory"):
        local_key()
