"""Exported packages shared by the export tests (each export compiles its libraries: build them once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canao.compiler.artifact import write_artifact
from canao.export.package import export_artifact
from canao.models.teacher import teacher_dir
from canao.models.tokenizer import load_tokenizer
from tests.compiler.graphs import DEC, ENC, torch_model

CASES = {"qa": (ENC, "qa"), "classification": (ENC, "classification"), "lm": (DEC, "lm")}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-art")
    out = {}
    for name, (spec, task) in CASES.items():
        weights = {k: v.detach().numpy() for k, v in torch_model(spec, task).state_dict().items()}
        tok = load_tokenizer(teacher_dir()) if name == "qa" else None  # WordPiece tables: ~9 s to probe
        write_artifact(root / name, spec, weights, task=task, tokenizer=tok)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def packages(artifacts, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-pkg")
    return {name: export_artifact(path, "linux-x86_64", root / name).out for name, path in artifacts.items()}
