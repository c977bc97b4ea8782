"""Artifacts: written atomically, loaded without torch, corrupt or truncated ones refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from canao.compiler.artifact import build_dir_name, load_artifact, write_artifact
from canao.compiler.build import BuildOptions
from canao.compiler.runtime import RuntimeLoadError
from canao.device import resolve_simd
from tests.compiler.graphs import ENC, torch_model


@pytest.fixture
def artifact(tmp_path) -> tuple[Path, torch.nn.Module]:
    model = torch_model(ENC, "qa")
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_artifact(tmp_path / "art", ENC, weights, task="qa")
    return tmp_path / "art", model


def test_layout_and_parity(artifact):
    path, model = artifact
    build = path / "compiled" / build_dir_name(resolve_simd(None))
    for name in ("arch.json", "task.json", "model.safetensors"):
        assert (path / name).exists()
    for name in ("ir.json", "kernel.c", "libmodel.so", "weights.bin", "tuning.json"):
        assert (build / name).exists()
    art = load_artifact(path)
    ids = np.array([3, 4, 5, 6])
    with torch.no_grad():
        want = model(torch.tensor(ids[None]))[0].numpy()
    assert np.abs(art.model.run(ids)["start_logits"] - want).max() < 1e-4
    assert not list(path.parent.glob(".art*"))  # no temp dirs left


def test_runs_without_importing_torch(artifact):
    path, _ = artifact
    code = (
        "import sys; from canao.compiler.artifact import load_artifact; "
        f"a = load_artifact({str(path)!r}); out = a.model.run([1, 2, 3]); "
        "assert out['start_logits'].shape == (1, 3); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_build_is_recompiled_from_weights(artifact):
    path, _ = artifact
    import shutil

    shutil.rmtree(path / "compiled")
    art = load_artifact(path)
    assert art.model.run([1, 2])["start_logits"].shape == (1, 2)


@pytest.mark.parametrize(
    "damage",
    ["truncate_weights", "zero_weights", "corrupt_library", "corrupt_ir", "delete_library", "directory_for_weights"],
)
def test_damaged_build_is_rebuilt_from_model_weights(artifact, damage):
    path, _ = artifact
    ids = np.array([3, 4, 5, 6])
    want = load_artifact(path).model.run(ids)["start_logits"]
    build = path / "compiled" / build_dir_name(resolve_simd(None))
    if damage == "truncate_weights":
        data = (build / "weights.bin").read_bytes()
        (build / "weights.bin").write_bytes(data[: len(data) // 2])
    elif damage == "zero_weights":  # the right size, wrong values: only the checksum can tell
        (build / "weights.bin").write_bytes(bytes((build / "weights.bin").stat().st_size))
    elif damage == "corrupt_library":
        (build / "libmodel.so").write_bytes(b"\x7fELF not really")
    elif damage == "corrupt_ir":
        (build / "ir.json").write_text('{"inputs": [')
    elif damage == "delete_library":
        (build / "libmodel.so").unlink()
    else:
        (build / "weights.bin").unlink()
        (build / "weights.bin").mkdir()
    np.testing.assert_array_equal(load_artifact(path).model.run(ids)["start_logits"], want)


@pytest.mark.parametrize(
    "damage,message",
    [
        ("corrupt_arch", "arch.json: altered or corrupt"),
        ("wrong_arch", "arch.json: altered or corrupt"),
        ("corrupt_task", "task.json: altered or corrupt"),
    ],
)
def test_damaged_artifact_is_refused(artifact, damage, message):
    path, _ = artifact
    if damage == "corrupt_arch":
        (path / "arch.json").write_text("{")
    elif damage == "wrong_arch":
        spec = json.loads((path / "arch.json").read_text())
        spec["vocab_size"] += 1
        (path / "arch.json").write_text(json.dumps(spec))
    else:
        (path / "task.json").write_bytes(b"\xff\xfe")
    with pytest.raises(RuntimeLoadError, match=message):
        load_artifact(path)


def test_missing_artifact(tmp_path):
    with pytest.raises(RuntimeLoadError, match="not found"):
        load_artifact(tmp_path / "nothing")


def test_a_build_from_another_precision_is_not_trusted(artifact, tmp_path):
    """An int8 build copied into an fp32 artifact (manifest and all) is rebuilt in fp32, not run in int8."""
    import shutil

    path, model = artifact
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    other = write_artifact(tmp_path / "int8", ENC, weights, task="qa", options=BuildOptions(precision="int8"))
    name = build_dir_name(resolve_simd(None))
    ids = np.array([3, 4, 5, 6])
    want = load_artifact(path).model.run(ids)["start_logits"]
    shutil.rmtree(path / "compiled" / name)
    shutil.copytree(other / "compiled" / name, path / "compiled" / name)
    art = load_artifact(path)
    assert art.model.graph.meta["matmul_precision"] == "fp32"
    np.testing.assert_array_equal(art.model.run(ids)["start_logits"], want)


def test_artifact_and_build_directories_share_permissions(artifact):
    import stat

    path, _ = artifact
    build = path / "compiled" / build_dir_name(resolve_simd(None))
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (path, path / "compiled", build)}
    assert modes == {0o755}


def test_writing_over_a_users_directory_is_refused(tmp_path):
    from canao.storage import ExistingDirectoryError

    model = torch_model(ENC, "backbone")
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    (tmp_path / "ud").mkdir()
    (tmp_path / "ud" / "notes.txt").write_text("precious")
    with pytest.raises(ExistingDirectoryError, match="notes.txt|did not write|not a directory canao wrote"):
        write_artifact(tmp_path / "ud", ENC, weights, task="backbone")
    assert (tmp_path / "ud" / "notes.txt").read_text() == "precious"
    write_artifact(tmp_path / "ud", ENC, weights, task="backbone", force=True)
    assert (tmp_path / "ud.old-1" / "notes.txt").read_text() == "precious" and (tmp_path / "ud" / "arch.json").exists()
    write_artifact(tmp_path / "ud", ENC, weights, task="backbone")  # an artifact of canao's own may be replaced
    (tmp_path / "ud" / "mine.txt").write_text("keep")
    with pytest.raises(ExistingDirectoryError, match="mine.txt"):
        write_artifact(tmp_path / "ud", ENC, weights, task="backbone")
