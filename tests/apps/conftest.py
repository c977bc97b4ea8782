"""Compiled artifacts for the app tests: a tiny span-QA encoder with the teacher's real WordPiece tokenizer
(random weights: answers are arbitrary but deterministic) and the bundled tinyshakespeare decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.compiler.artifact import Artifact, load_artifact, write_artifact
from canao.models import build_model
from canao.models.teacher import teacher_dir
from canao.models.tokenizer import load_tokenizer

# max_positions 64 so that ordinary paragraphs need several windows.
QA_SPEC = ArchSpec("encoder", 30522, 64, 32, (LayerSpec(2, 16, 64), LayerSpec(2, 16, 64)))


@pytest.fixture(scope="session")
def qa_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(QA_SPEC, "qa")
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("apps") / "qa-tiny"
    write_artifact(path, QA_SPEC, weights, task="qa", tokenizer=load_tokenizer(teacher_dir()))
    return path


@pytest.fixture(scope="session")
def qa_art(qa_path) -> Artifact:
    return load_artifact(qa_path)


@pytest.fixture(scope="session")
def lm_art() -> Artifact:
    from canao.apps.bundled import bundled_artifact

    return bundled_artifact("lm")
