"""A corruption sweep over every file of an artifact: each damage gives a clean CanaoError or the same output.

Each file is truncated, has a block zeroed, has bits flipped, is replaced
by a directory, or by a symlink to an intact copy outside the artifact; then
the artifact is loaded and run in a subprocess, so a crash (SIGSEGV, SIGBUS,
SIGILL) fails this test instead of killing pytest.
A damaged build is rebuilt from model.safetensors (the output is then
bit-identical); damage to what cannot be rebuilt is refused. The sweep runs
again as another machine would (another signing key): every build is then
foreign and is rebuilt, and the damage is still refused or repaired.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from canao.compiler.artifact import load_artifact, write_artifact
from canao.models.teacher import teacher_dir
from tests.compiler.graphs import ENC, torch_model

DAMAGES = ("truncate", "zero_block", "flip_bits", "directory", "symlink")

# Loads the artifact given as argv[1], runs it on fixed ids and prints the result as JSON; a CanaoError is an
# answer too. Anything else (another exception, a signal) is a failure of the test.
PROBE = """
import json, sys
from canao.compiler.artifact import load_artifact
from canao.errors import CanaoError
try:
    out = load_artifact(sys.argv[1]).model.run([3, 4, 5, 6])["start_logits"]
    print(json.dumps({"output": out.tolist()}))
except CanaoError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, list[float]]:
    from tokenizers import Tokenizer

    path = tmp_path_factory.mktemp("sweep") / "art"
    weights = {k: v.detach().numpy() for k, v in torch_model(ENC, "qa").state_dict().items()}
    write_artifact(path, ENC, weights, task="qa", tokenizer=Tokenizer.from_file(str(teacher_dir() / "tokenizer.json")))
    return path, load_artifact(path).model.run([3, 4, 5, 6])["start_logits"].tolist()


def damage(file: Path, how: str, rng: np.random.Generator, outside: Path) -> None:
    """Damage `file` in place; `outside` is a directory beyond the artifact (where a symlink points)."""
    if how == "symlink":  # an intact copy, but outside the artifact: following a link could read anything
        shutil.move(str(file), outside / file.name)
        file.symlink_to(outside / file.name)
        return
    if how == "directory":
        file.unlink()
        file.mkdir()
        return
    data = bytearray(file.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "zero_block":
        start = len(data) // 3
        data[start : start + 4096] = bytes(len(data[start : start + 4096]))
    else:
        for bit in rng.choice(8 * len(data), size=min(8, 8 * len(data)), replace=False):
            data[bit // 8] ^= 1 << (bit % 8)
    file.write_bytes(bytes(data))


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_every_file_is_covered(pristine):
    names = {Path(name).name for name in _files(pristine[0])}
    assert {
        "arch.json",
        "task.json",
        "model.safetensors",
        "tokenizer.json",
        "manifest.json",
        "ir.json",
        "kernel.c",
        "libmodel.so",
        "weights.bin",
        "tuning.json",
    } <= names


@pytest.mark.parametrize("how", DAMAGES)
def test_corruption_sweep(pristine, tmp_path, how):
    _sweep(pristine, tmp_path, how, {})


@pytest.mark.parametrize("how", ("flip_bits", "symlink"))
def test_corruption_sweep_on_another_machine(pristine, tmp_path, how):
    """Another signing key: the build is foreign, so it is compiled again; damage is still caught."""
    _sweep(pristine, tmp_path, how, {"CANAO_CONFIG_DIR": str(tmp_path / "another-machine")})


def _sweep(pristine: tuple[Path, list[float]], tmp_path: Path, how: str, env: dict[str, str]) -> None:
    path, want = pristine
    rng = np.random.default_rng(len(how))
    failures = []
    for name in _files(path):
        copy = tmp_path / name.replace("/", "_") / "art"
        shutil.copytree(path, copy)
        (copy.parent / "outside").mkdir()
        damage(copy / name, how, rng, copy.parent / "outside")
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, str(copy)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **env, "PYTHONFAULTHANDLER": "1"},
        )
        if proc.returncode != 0:
            failures.append(f"{name}: exit {proc.returncode} {proc.stderr[-400:]}")
            continue
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        if "output" in answer and answer["output"] != want:
            failures.append(f"{name}: ran with a different output")
        elif "error" in answer and name not in answer["message"] and Path(name).name not in answer["message"]:
            failures.append(f"{name}: the error does not name the file: {answer['message']}")
    assert not failures, failures
