"""`canao compile`: a Hugging Face checkpoint (or the bundled teacher) into an artifact, with the stages on request.

Loading the checkpoint needs torch (canao.models), so it is imported here
only when called; the artifact it writes loads without it.

Example::

    result = compile_checkpoint(Path("ckpt"), Path("art"), BuildOptions(precision="bf16"), explain=True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from canao.arch import ArchSpec
from canao.compiler.artifact import write_artifact
from canao.compiler.build import BuildOptions
from canao.compiler.explain import StageStats, dump_stages, explain_pipeline
from canao.compiler.lower import lower_spec


@dataclass(frozen=True)
class CompileResult:
    spec: ArchSpec
    task: str
    explain: list[StageStats] = field(default_factory=list)  # per-pass counts, when asked
    dumped: list[Path] = field(default_factory=list)  # stage files written, when asked


def compile_checkpoint(
    model_dir: Optional[Path],
    out: Path,
    options: BuildOptions,
    *,
    task: Optional[str] = None,
    explain: bool = False,
    dump: Optional[Path] = None,
    force: bool = False,
) -> CompileResult:
    """Load a checkpoint (None: the bundled teacher), optionally explain/dump the pass pipeline, write the artifact."""
    from canao.models.hf import load_pretrained
    from canao.models.teacher import load_teacher

    loaded = load_teacher(task) if model_dir is None else load_pretrained(model_dir, task=task)
    weights = {k: v.detach().numpy() for k, v in loaded.model.state_dict().items()}
    rows, dumped = [], []
    if explain or dump:
        lowered = lower_spec(loaded.spec, weights, loaded.task)
        rows = explain_pipeline(lowered, options) if explain else []
        dumped = dump_stages(lowered, dump, options) if dump else []
    write_artifact(
        out,
        loaded.spec,
        weights,
        task=loaded.task,
        labels=loaded.labels,
        tokenizer=loaded.tokenizer,
        options=options,
        force=force,
    )
    return CompileResult(loaded.spec, loaded.task, rows, dumped)
