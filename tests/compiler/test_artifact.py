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
    code = ("import sys; from canao.compiler.artifact import load_artifact; "
            f"a = load_artifact({str(path)!r}); out = a.model.run([1, 2, 3]); "
            "assert out['start_logits'].shape == (1, 3); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_build_is_recompiled_from_weights(artifact):
    path, _ = artifact
    import shutil

    shutil.rmtree(path / "compiled")
    art = load_artifact(path)
    assert art.model.run([1, 2])["start_logits"].shape == (1, 2)


@pytest.mark.parametrize("damage,message", [
    ("truncate_weights", "weight blob holds 4616 floats"),
    ("corrupt_library", "cannot be loaded"),
    ("corrupt_ir", "do not fit together"),
    ("delete_library", "libmodel.so: missing"),
    ("corrupt_arch", "arch.json: corrupt"),
    ("wrong_arch", "another architecture"),
])
def test_damaged_artifact_is_refused(artifact, damage, message):
    path, _ = artifact
    build = path / "compiled" / build_dir_name(resolve_simd(None))
    if damage == "truncate_weights":
        data = (build / "weights.bin").read_bytes()
        (build / "weights.bin").write_bytes(data[: len(data) // 2])
    elif damage == "corrupt_library":
        (build / "libmodel.so").write_bytes(b"\x7fELF not really")
    elif damage == "corrupt_ir":
        (build / "ir.json").write_text("{\"inputs\": [")
    elif damage == "delete_library":
        (build / "libmodel.so").unlink()
    elif damage == "corrupt_arch":
        (path / "arch.json").write_text("{")
    else:
        spec = json.loads((path / "arch.json").read_text())
        spec["vocab_size"] += 1
        (path / "arch.json").write_text(json.dumps(spec))
    with pytest.raises(RuntimeLoadError, match=message):
        load_artifact(path)


def test_missing_artifact(tmp_path):
    with pytest.raises(RuntimeLoadError, match="not found"):
        load_artifact(tmp_path / "nothing")
