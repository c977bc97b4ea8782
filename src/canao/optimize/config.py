"""What `canao optimize` is asked to do, and how hard it tries (presets).

A preset sets the effort of every stage; `quick` is sized to finish in about
15 minutes on 2 cores on the built-in defaults (the bundled teacher and the
bundled SST-2 sample), `full` is the serious run (hours on a real training
set). The search space is derived from the teacher's shape (every member is a
slice of it), narrower in `quick`.

Example::

    config = OptimizeConfig(out=Path("run"), task="sst2", latency_ms=8.0, preset="quick")
    space = space_around(teacher_spec, PRESETS["quick"])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from canao.arch import ArchSpec, SearchSpace
from canao.errors import SpecError

OPTIMIZE_TASKS = ("sst2", "mrpc", "qnli", "squad")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "int8")
# How the chosen student starts its distillation: its slice of the trained supernet, or the teacher's most
# important heads and FFN units (canao.models.prune; on SST-2 the pruned start took a 3-layer student 2.6
# points further than the teacher's slice, docs/training.md).
STUDENT_INITS = ("supernet", "prune")
TASK_METRIC = {"sst2": "accuracy", "mrpc": "accuracy", "qnli": "accuracy", "squad": "f1"}
TASK_SEQ_LEN = {"sst2": 128, "mrpc": 128, "qnli": 128, "squad": 384}


@dataclass(frozen=True)
class Preset:
    """The effort of each stage. Fractions are of the teacher's size (rounded to whole heads / 32 wide)."""

    name: str
    hidden_fractions: tuple[float, ...]
    depth_fractions: tuple[float, ...]
    heads_fractions: tuple[float, ...]
    ffn_fractions: tuple[float, ...]
    teacher_epochs: float  # fine-tuning, when the teacher is not fine-tuned for the task yet
    profile_reps: int
    profile_passes: int
    calibration_models: int
    supernet_epochs: float
    evaluations: int  # architectures the controller scores
    eval_examples: Optional[int]  # held-out examples each member is scored on (None: all)
    intermediate_epochs: float  # distillation stage 1 (hidden states, attention, value relations)
    distill_epochs: float  # distillation stage 2 (logits with temperature, labels)
    tune_budget_s: float  # GEMM tuning per precision
    timing_runs: int  # timed runs per model in the final comparison
    checkpoint_every_s: float  # training stages checkpoint at most this far apart: what a kill can lose
    supernet_steps: Optional[int] = None
    teacher_steps: Optional[int] = None
    distill_steps: Optional[int] = None


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick",
        hidden_fractions=(2 / 3, 1.0),
        depth_fractions=(1 / 3, 1 / 2, 2 / 3, 1.0),
        heads_fractions=(1 / 3, 2 / 3, 1.0),
        ffn_fractions=(1 / 4, 1 / 2, 1.0),
        teacher_epochs=3.0,
        profile_reps=10,
        profile_passes=2,
        calibration_models=6,
        supernet_epochs=2.0,
        evaluations=48,
        eval_examples=400,
        intermediate_epochs=2.0,
        distill_epochs=4.0,
        tune_budget_s=10.0,
        timing_runs=30,
        checkpoint_every_s=30.0,
    ),
    "full": Preset(
        "full",
        hidden_fractions=(2 / 3, 5 / 6, 1.0),
        depth_fractions=(1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0),
        heads_fractions=(1 / 3, 1 / 2, 2 / 3, 1.0),
        ffn_fractions=(1 / 4, 1 / 2, 3 / 4, 1.0),
        teacher_epochs=3.0,
        profile_reps=30,
        profile_passes=3,
        calibration_models=12,
        supernet_epochs=1.0,
        evaluations=200,
        eval_examples=2000,
        intermediate_epochs=1.0,
        distill_epochs=3.0,
        tune_budget_s=60.0,
        timing_runs=60,
        checkpoint_every_s=120.0,
    ),
}


def _round_to(value: float, unit: int) -> int:
    return max(unit, int(round(value / unit)) * unit)


def space_around(teacher: ArchSpec, preset: Preset) -> SearchSpace:
    """The encoder space of slices of `teacher` at the preset's fractions of its width, depth, heads and FFN."""
    if teacher.kind != "encoder":
        raise SpecError(f"`canao optimize` searches encoders; the teacher is a {teacher.kind}.")
    shapes = {(layer.heads, layer.head_dim, layer.ffn) for layer in teacher.layers}
    if len(shapes) != 1:
        raise SpecError(
            f"the teacher's layers differ ({teacher.describe()}); the search space is derived from a teacher "
            "whose layers share one shape."
        )
    heads, head_dim, ffn = shapes.pop()
    hidden_unit = 32 if teacher.hidden % 32 == 0 else 8
    ffn_unit = 32 if ffn % 32 == 0 else 8

    def choices(fractions: tuple[float, ...], full: int, unit: int) -> tuple[int, ...]:
        return tuple(sorted({min(full, _round_to(f * full, unit)) for f in fractions}))

    return SearchSpace(
        kind="encoder",
        vocab_size=teacher.vocab_size,
        max_positions=teacher.max_positions,
        hidden_choices=choices(preset.hidden_fractions, teacher.hidden, hidden_unit),
        layer_choices=choices(preset.depth_fractions, teacher.num_layers, 1),
        heads_choices=choices(preset.heads_fractions, heads, 1),
        head_dim=head_dim,
        ffn_choices=choices(preset.ffn_fractions, ffn, ffn_unit),
    )


@dataclass(frozen=True)
class OptimizeConfig:
    """One `canao optimize` run. None means: the built-in default (bundled teacher, bundled task sample, a
    budget of a quarter of the teacher's predicted latency)."""

    out: Path
    teacher: Optional[Path] = None
    task: str = "sst2"
    train: Optional[Path] = None
    dev: Optional[Path] = None
    device: str = "local"  # 'local', 'qemu-aarch64', or a command template with {cmd} (e.g. "ssh phone {cmd}")
    simd: Optional[str] = None  # the device's SIMD level, for a command template
    compiler: Optional[str] = None  # a cross compiler for the device
    latency_ms: Optional[float] = None
    precision: str = "auto"
    tolerance: float = 0.5  # accuracy points a faster precision may lose against fp32 (precision auto)
    preset: str = "quick"
    threads: int = 2
    seed: int = 0
    train_precision: str = "auto"  # training autocast: auto, fp32 or bf16 (train/finetune.py)
    student_init: str = "supernet"
    augment: int = 0  # distillation: augmented variants per training sentence (GLUE tasks; canao.data.augment)
    preset_overrides: dict[str, Any] = field(default_factory=dict)  # tests and experiments: Preset fields

    def __post_init__(self) -> None:
        if self.task not in OPTIMIZE_TASKS:
            raise SpecError(f"`task` must be one of {OPTIMIZE_TASKS}, but got {self.task!r}.")
        if self.precision not in PRECISION_CHOICES:
            raise SpecError(f"`precision` must be one of {PRECISION_CHOICES}, but got {self.precision!r}.")
        if self.preset not in PRESETS:
            raise SpecError(f"`preset` must be one of {tuple(PRESETS)}, but got {self.preset!r}.")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise SpecError(f"`latency_ms > 0` must hold, but got {self.latency_ms}.")
        if not self.tolerance >= 0:
            raise SpecError(f"`tolerance >= 0` must hold, but got {self.tolerance}.")
        if self.student_init not in STUDENT_INITS:
            raise SpecError(f"`student_init` must be one of {STUDENT_INITS}, but got {self.student_init!r}.")
        if self.augment < 0:
            raise SpecError(f"`augment >= 0` must hold, but got {self.augment}.")
        if self.augment and self.task == "squad":
            raise SpecError("`augment` is for the GLUE tasks (word replacement in sentences), not squad.")
        unknown = set(self.preset_overrides) - set(Preset.__dataclass_fields__)
        if unknown:
            raise SpecError(
                f"unknown preset field(s) {sorted(unknown)}; the fields are {list(Preset.__dataclass_fields__)}."
            )

    @property
    def effort(self) -> Preset:
        return replace(PRESETS[self.preset], **self.preset_overrides)

    @property
    def metric(self) -> str:
        return TASK_METRIC[self.task]

    @property
    def seq_len(self) -> int:
        return TASK_SEQ_LEN[self.task]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
