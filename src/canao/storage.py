"""Writing files and directories so that a crash never leaves a half-written one in place.

Files are written to a temp file beside the target and renamed over it; a
directory is built in a temp directory and swapped in (an existing target is
moved aside first and deleted after the swap). Used by checkpoints,
artifacts, device profiles and the tuning database.

Example::

    write_json_atomically(Path("profile.json"), data)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, data: Any, indent: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=indent)
    os.replace(tmp, path)


def replace_directory(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing target is swapped out first and deleted after."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
