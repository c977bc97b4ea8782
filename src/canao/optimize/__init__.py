"""`canao optimize`: one command from a teacher, a task, a device and a latency budget to a searched, distilled,
compiled, evaluated and deployable artifact with an HTML report.

Stages (optimize/stages.py), each in RUN/<stage>/, reused on a re-run, resumed when killed:
teacher -> profile -> supernet -> search -> distill -> compile -> evaluate -> package (RUN/artifact); then
RUN/report.json and RUN/report.html (optimize/report.py).

Example::

    result = optimize(OptimizeConfig(out=Path("run"), task="sst2", latency_ms=8.0))
    print(result.artifact, result.report_html)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from canao.optimize.config import PRESETS, OptimizeConfig, Preset
from canao.optimize.pipeline import Progress, check_start, run_stages
from canao.storage import exclusive, write_json_atomically

__all__ = ["OptimizeConfig", "OptimizeResult", "PRESETS", "Preset", "optimize", "stage_names"]


@dataclass(frozen=True)
class OptimizeResult:
    status: str  # "done", or "infeasible" (no member met the budget: see `binding`)
    artifact: Optional[Path]
    report_json: Path
    report_html: Path
    chosen: Optional[str]  # the chosen architecture and precision, described
    binding: Optional[str]  # the constraint no member could meet
    reused: list[str]  # stages taken from an earlier run


def stage_names() -> list[str]:
    from canao.optimize.stages import STAGES

    return [s.name for s in STAGES]


def optimize(
    config: OptimizeConfig, progress: Optional[Progress] = None, start_from: Optional[str] = None
) -> OptimizeResult:
    """Run (or resume) the pipeline and write the report."""
    from canao.optimize.report import write_report
    from canao.optimize.stages import STAGES, OptimizeState

    check_start(STAGES, start_from)  # before the lock and any work
    with exclusive(Path(config.out), "optimize run"):  # two runs into one directory would clobber each other
        state = OptimizeState(config, progress=progress)
        state.out.mkdir(parents=True, exist_ok=True)
        write_json_atomically(state.out / "optimize.json", config.to_dict())
        run_stages(STAGES, state, start_from)
        json_path, html_path = write_report(state)
    artifact = state.outputs["package"].get("artifact")
    search = state.outputs["search"]
    chosen = None
    if artifact:
        chosen = f"{search.get('chosen_describe')} -> {state.outputs['package']['precision']}"
    binding = search.get("binding") or (None if artifact else state.outputs["evaluate"].get("precision_rule"))
    return OptimizeResult(
        "done" if artifact else "infeasible",
        Path(artifact) if artifact else None,
        json_path,
        html_path,
        chosen,
        binding,
        list(state.reused),
    )
