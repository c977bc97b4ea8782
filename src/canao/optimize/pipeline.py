"""The stage runner of `canao optimize`: each stage's output in RUN/<stage>/, reused, resumed, superseded.

A stage is done when RUN/<stage>/stage.json exists (written atomically, last). It records the settings the
stage depended on (its key); a re-run reuses every done stage whose key still matches, and re-runs the first
stage whose key changed and every stage after it. A stage killed half-way has no stage.json, so it runs
again, and resumes at its own step (training checkpoints, the profile file, the trials database).
`--from STAGE` re-runs from that stage. Nothing is deleted: the directory of a stage that runs again is moved
to RUN/superseded/<stage>-<time> first.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from canao.errors import SpecError
from canao.storage import write_json_atomically

STAGE_FILE = "stage.json"
KEY_FILE = "key.json"
# (stage, note, done, total): what is running now, for a progress bar
Progress = Callable[[str, str, int, int], None]


@dataclass
class RunState:
    """What the stages share: the run directory, the finished stages' outputs and a progress callback."""

    out: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    progress: Optional[Progress] = None

    def dir(self, stage: str) -> Path:
        path = self.out / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report(self, stage: str, note: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, note, done, total)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Any], dict[str, Any]]  # takes the run state (a RunState subclass)
    key: Callable[[Any], dict[str, Any]]  # the settings this stage depends on (JSON-serialisable)
    help: str = ""


def _read_stage(path: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads((path / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "output" in data else None


def _read_key(path: Path) -> Any:
    try:
        return json.loads((path / KEY_FILE).read_text())
    except (OSError, ValueError):
        return None


def supersede(state: RunState, stage: str) -> Optional[Path]:
    """Move RUN/<stage> aside (never delete it); returns where it went."""
    source = state.out / stage
    if not source.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = state.out / "superseded" / f"{stage}-{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))
    return target


def check_start(stages: list[Stage], start_from: Optional[str]) -> None:
    """Refuse a `--from` that names no stage (the one check, called before any work and by run_stages)."""
    names = [s.name for s in stages]
    if start_from is not None and start_from not in names:
        raise SpecError(f"`--from` must name a stage, one of {names}, but got {start_from!r}.")


def run_stages(stages: list[Stage], state: RunState, start_from: Optional[str] = None) -> RunState:
    """Run the stages in order, reusing done ones (see the module docstring)."""
    check_start(stages, start_from)
    rerun = False
    for stage in stages:
        rerun = rerun or stage.name == start_from
        key = json.loads(json.dumps(stage.key(state), default=str))
        saved = _read_stage(state.out / stage.name)
        if saved is not None and not rerun and saved.get("key") == key:
            state.outputs[stage.name] = saved["output"]
            state.wall_s[stage.name] = float(saved.get("wall_s", 0.0))
            state.reused.append(stage.name)
            continue
        started = _read_key(state.out / stage.name)
        if saved is not None or (started is not None and (started != key or rerun)):
            supersede(state, stage.name)  # settings changed or asked to re-run: start this stage afresh
        rerun = True  # every later stage depends on this one's new output
        write_json_atomically(state.dir(stage.name) / KEY_FILE, key)  # a killed stage resumes only with this key
        state.report(stage.name, stage.help, 0, 1)
        start = time.perf_counter()
        output = stage.run(state)
        wall = time.perf_counter() - start
        output = json.loads(json.dumps(output, default=str))
        write_json_atomically(
            state.dir(stage.name) / STAGE_FILE,
            {"stage": stage.name, "key": key, "output": output, "wall_s": wall, "finished": time.time()},
        )
        state.outputs[stage.name], state.wall_s[stage.name] = output, wall
        state.report(stage.name, "done", 1, 1)
    return state
