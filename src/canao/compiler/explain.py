"""What each pass did: op and intermediate-tensor counts and memory, per stage; stage dumps.

`canao compile --explain` prints `explain_pipeline`'s rows; `--dump DIR` writes
`dump_stages`' files: the IR text after every pass and the generated C.

Example::

    for row in explain_pipeline(lower_model(model)): print(row)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from canao.compiler.build import BuildOptions
from canao.compiler.codegen.c import generate_c
from canao.compiler.ir import Graph
from canao.compiler.passes.pipeline import run_pipeline_stages
from canao.device import SIMD_LEVELS


@dataclass(frozen=True)
class StageStats:
    stage: str
    ops: int
    intermediates: int  # activation tensors produced by nodes
    activation_bytes: int  # one buffer per intermediate, at max positions
    planned_peak_bytes: int | None  # after plan_memory: the arena size


def stage_stats(name: str, graph: Graph) -> StageStats:
    m = int(graph.meta["max_positions"])
    produced = [n.output for n in graph.nodes if n.op != "kv_append"]
    total = sum(4 * math.prod(graph.types[v].concrete(m, m, m)) for v in produced)
    return StageStats(name, len(graph.nodes), len(produced), total, graph.meta.get("peak_activation_bytes"))


def _stages(lowered: Graph, options: BuildOptions) -> list[tuple[str, Graph]]:
    """The pass pipeline's stages for the options' SIMD width and precision (untuned GEMMs)."""
    options = options.resolved()
    return list(run_pipeline_stages(lowered, nr=SIMD_LEVELS[options.simd].panel_width, precision=options.precision))


def explain_pipeline(lowered: Graph, options: BuildOptions = BuildOptions()) -> list[StageStats]:
    return [stage_stats(name, graph) for name, graph in _stages(lowered, options)]


def dump_stages(
    lowered: Graph,
    directory: Path,
    options: BuildOptions = BuildOptions(),
    parts: tuple[str, ...] = ("ir", "passes", "c"),
) -> list[Path]:
    """Write lowered IR ("ir"), the IR after each pass ("passes") and the C source ("c")."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    final = lowered
    for i, (name, graph) in enumerate(_stages(lowered, options)):
        final = graph
        if (name == "lowered" and "ir" in parts) or (name != "lowered" and "passes" in parts):
            path = directory / f"{i:02d}_{name}.ir.txt"
            path.write_text(graph.to_text() + "\n")
            written.append(path)
    if "c" in parts:
        path = directory / "kernel.c"
        path.write_text(generate_c(final))
        written.append(path)
    return written
