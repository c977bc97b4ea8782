"""The small data subsets shipped inside canao (data/samples/, attribution in its README), found by task.

They make the built-in defaults and the tests work on a fresh machine;
full data sets come from the user's paths in their standard formats.

Example::

    train, dev = bundled_task_files("sst2")
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from canao.errors import DataError

SAMPLES_DIR = Path(__file__).parent / "samples"
_TASK_FILES: dict[str, tuple[str, Optional[str]]] = {
    "sst2": ("sst2-train-sample.tsv", "sst2-dev.tsv"),
    "qnli": ("qnli-dev-sample.tsv", None),
    "squad": ("squad-v1.1-dev-sample.json", None),
    "lm": ("tinyshakespeare-sample.txt", None),
}


def bundled_squad_sample() -> Path:
    """A 2-article SQuAD v1.1 dev sample (CC BY-SA 4.0)."""
    return SAMPLES_DIR / "squad-v1.1-dev-sample.json"


def bundled_text_sample() -> Path:
    """100 KB of tinyshakespeare (public domain)."""
    return SAMPLES_DIR / "tinyshakespeare-sample.txt"


def task_files(task: str, train: Optional[Path], dev: Optional[Path]) -> tuple[Path, Optional[Path]]:
    """The given (train, dev) files, else the bundled ones where canao ships them."""
    names = _TASK_FILES.get(task)
    bundled = (SAMPLES_DIR / names[0], SAMPLES_DIR / names[1] if names[1] else None) if names else (None, None)
    train, dev = train or bundled[0], dev or bundled[1]
    if train is None:
        raise DataError(f"task {task} has no bundled training data; pass --train FILE.")
    return train, dev
