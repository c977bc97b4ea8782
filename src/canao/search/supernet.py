"""Phase 1 of the search: train the weight-sharing supernet once, with knowledge distillation and the sandwich rule.

The supernet is the task-fine-tuned teacher itself (every member of the
default space is a leading slice of it: canao.models.elastic). Each
optimizer step samples sub-networks by the sandwich rule of BigNAS/OFA —
the largest member, the smallest member and `random_subnets` uniformly drawn
ones — and accumulates (sums), over them, the distillation loss against the frozen
teacher's logits (soft cross-entropy at `temperature`, plus `hard_weight`
times the task loss on the labels). The sub-networks read the supernet's
weights through differentiable slices (torch.func.functional_call), so every
member trains the weights it shares. The loop is canao's fine-tuning loop
(AdamW, warm-up/decay, checkpoints by steps, by time and on SIGTERM, exact
resume: the sampled members depend only on (seed, step)).

After training, a member's accuracy "with inherited weights" is that of the
slice, scored on held-out data by the task's official metric: the search's
cheap accuracy estimate (CANAO Sec. 3.2).

Example::

    config = SupernetConfig(FinetuneConfig("sst2", Path("run/supernet"), epochs=1))
    result = train_supernet(config, space, Path("teacher-sst2"), train_path)
    accuracy = inherited_accuracy(load_supernet(Path("run/supernet")), spec, dev_data)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from canao.arch import ArchSpec
from canao.errors import SpecError
from canao.models.elastic import check_sliceable, extract_subnet, slice_state_dict
from canao.models.heads import backbone_of, build_model
from canao.models.hf import load_pretrained, save_pretrained
from canao.search.candidates import CandidateSpace
from canao.train.finetune import FinetuneConfig, TrainResult, load_for_task, run_training
from canao.train.losses import hidden_mse, soft_logit_loss
from canao.train.progress import Progress
from canao.train.tasks import MODEL_TASK, TaskData, get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupernetConfig:
    train: FinetuneConfig  # task, run directory, epochs, batch size, lr, checkpointing, seed
    random_subnets: int = 2  # n of the sandwich rule: largest + smallest + n random members per step
    temperature: float = 2.0
    hard_weight: float = 0.5  # weight of the label loss beside the distillation loss
    # Budget-aware sampling: the random members are drawn among those predicted at <= focus_ms (None: all). The
    # search only wants members near its budget, and under a tight budget uniform sampling spends most steps on
    # deep members the search will reject, while the shallow ones it must rank barely train.
    focus_ms: Optional[float] = None
    # Weight of the MSE between each member's last hidden state (through a learned projection per hidden size)
    # and the teacher's (encoders). Logits alone do not train shallow members: their [CLS] reaches a pooler
    # tuned for the sixth layer, the logits come out nearly constant and barely move (measured: 2-4-layer
    # members stayed at the majority class); DynaBERT and TinyBERT distil hidden states for the same reason.
    hidden_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.random_subnets < 0 or self.temperature <= 0 or self.hard_weight < 0 or self.hidden_weight < 0:
            raise SpecError(
                "need random_subnets >= 0, temperature > 0, hard_weight >= 0, hidden_weight >= 0; got "
                f"{self.random_subnets}, {self.temperature}, {self.hard_weight}, {self.hidden_weight}."
            )
        if self.focus_ms is not None and not self.focus_ms > 0:
            raise SpecError(f"`focus_ms` must be > 0 (or None for uniform sampling), but got {self.focus_ms}.")


MemberLatency = Callable[[ArchSpec], float]  # predicted ms of a member (the search's latency model)
FOCUS_TRIES = 200  # rejection-sampling draws per random member before falling back to the smallest


class WithLastHidden(nn.Module):
    """A task model whose forward returns (task outputs, last hidden state), so functional_call reaches both."""

    def __init__(self, model: nn.Module, task: Any) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[Any, Optional[torch.Tensor]]:
        model = self.model
        encoder = getattr(model, "encoder", None)
        if encoder is None:  # a decoder: the task's outputs only
            return self.task.forward(model, batch), None
        out = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if hasattr(model, "classifier"):
            return model.classifier(model.dropout(out.pooled)), out.last_hidden_state
        logits = model.qa(out.last_hidden_state)
        return (logits[..., 0], logits[..., 1]), out.last_hidden_state


class HiddenProjections(nn.Module):
    """One learned map per member hidden size onto the teacher's hidden size, initialised to the identity on the
    leading dimensions (a member's hidden units are the teacher's leading ones)."""

    def __init__(self, hidden_sizes: tuple[int, ...], teacher_hidden: int) -> None:
        super().__init__()
        self.maps = nn.ModuleDict()
        for h in sorted(set(hidden_sizes)):
            layer = nn.Linear(h, teacher_hidden)
            with torch.no_grad():
                layer.weight.zero_()
                layer.weight[:h, :h] = torch.eye(h)
                layer.bias.zero_()
            self.maps[str(h)] = layer

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.maps[str(hidden.shape[-1])](hidden)


class SandwichLoss:
    """The loss of one batch: the sandwich of members, each distilled from the teacher's logits and last hidden
    state."""

    def __init__(
        self,
        supernet: nn.Module,
        teacher: nn.Module,
        space: CandidateSpace,
        config: SupernetConfig,
        latency: Optional[MemberLatency] = None,
    ) -> None:
        if config.focus_ms is not None and latency is None:
            raise SpecError("budget-aware sampling (focus_ms) needs the latency model of the members.")
        self.supernet, self.teacher, self.space, self.config, self.latency = supernet, teacher, space, config, latency
        self.big = backbone_of(supernet).spec
        self.projections = HiddenProjections(space.arch.hidden_choices, backbone_of(teacher).spec.hidden)
        self.task = get_task(config.train.task)
        self.model_task = MODEL_TASK[config.train.task]
        self.num_labels = getattr(getattr(supernet, "classifier", None), "out_features", 2)
        self.templates: dict[str, nn.Module] = {}

    def members(self) -> list[ArchSpec]:
        """Largest, smallest and n random members, drawn from torch's RNG (reseeded per step by the loop)."""
        smallest, largest = self.space.smallest().spec, self.space.arch.largest()
        randoms = [self._random_member(smallest) for _ in range(self.config.random_subnets)]
        if self.config.focus_ms is not None and self._predicted(largest) > self.config.focus_ms:
            # The largest member pulls the shared leading layers back to feeding the teacher's later layers;
            # measured, with it in every step the shallow members' [CLS] stays constant (majority class).
            # Under a focus it is not a candidate, and the frozen teacher is the distillation target anyway.
            return [smallest, *randoms]
        return [largest, smallest, *randoms]

    def _predicted(self, spec: ArchSpec) -> float:
        return self.latency(spec) if self.latency is not None else 0.0

    def _random_member(self, fallback: ArchSpec) -> ArchSpec:
        """A uniform member, or with `focus_ms` a uniform one among those predicted within it (rejection sampling)."""
        counts = self.space.choice_counts()
        for _ in range(FOCUS_TRIES if self.config.focus_ms is not None else 1):
            spec = self.space.decode([int(torch.randint(0, c, ())) for c in counts]).spec
            if self.config.focus_ms is None or self._predicted(spec) <= self.config.focus_ms:
                return spec
        return fallback

    def _template(self, spec: ArchSpec) -> nn.Module:
        """A parameter-free (meta) module of `spec` that functional_call fills with sliced supernet weights."""
        key = spec.to_json()
        if key not in self.templates:
            with torch.device("meta"):
                model = build_model(spec, self.model_task, num_labels=self.num_labels, dropout=0.1)
            self.templates[key] = WithLastHidden(model, self.task)
        return self.templates[key]

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            self.teacher.eval()
            target, target_hidden = WithLastHidden(self.teacher, self.task)(batch)
        params = dict(self.supernet.named_parameters())
        total = torch.zeros(())
        for spec in self.members():
            template = self._template(spec)
            template.train(self.supernet.training)
            sliced = {f"model.{k}": v for k, v in slice_state_dict(params, self.big, spec).items()}
            outputs, hidden = torch.func.functional_call(template, sliced, (batch,))
            total = total + self._distillation(outputs, target, batch)
            if self.config.hidden_weight and hidden is not None and target_hidden is not None:
                mask = batch["attention_mask"]
                total = total + self.config.hidden_weight * hidden_mse(hidden, target_hidden, self.projections, mask)
        return total  # summed, as BigNAS accumulates: a mean would give each member 1/n of the step size

    def _distillation(self, outputs: Any, target: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.config.temperature
        pairs = list(zip(outputs, target)) if isinstance(outputs, tuple) else [(outputs, target)]
        mask = batch["attention_mask"]
        soft = [
            soft_logit_loss(s.masked_fill(mask == 0, -1e4), z.masked_fill(mask == 0, -1e4), t)
            if s.dim() == 2 and s.shape == mask.shape
            else soft_logit_loss(s, z, t)
            for s, z in pairs
        ]
        loss: torch.Tensor = sum(soft, torch.zeros(())) / len(soft)
        if self.config.hard_weight and ("labels" in batch or "start_positions" in batch):
            loss = loss + self.config.hard_weight * self.task.loss(outputs, batch)
        return loss


def check_space_fits(space: CandidateSpace, teacher_spec: ArchSpec) -> None:
    """Every member must be a slice of the teacher (the supernet); say which field is too big otherwise."""
    try:
        check_sliceable(teacher_spec, space.arch.largest())
    except SpecError as err:
        raise SpecError(
            f"the search space's largest member is not a slice of the teacher ({err}); shrink the space to the "
            f"teacher {teacher_spec.describe()}."
        ) from None


def train_supernet(
    config: SupernetConfig,
    space: CandidateSpace,
    teacher_dir: Path,
    train_path: Path,
    progress: Optional[Progress] = None,
    latency: Optional[MemberLatency] = None,
) -> TrainResult:
    """Train the supernet (initialised from the fine-tuned teacher) and save it to <run>/model (HF layout).

    `latency` (the members' predicted ms) is needed when `config.focus_ms` asks for budget-aware sampling."""
    task_name = config.train.task
    teacher = load_for_task(teacher_dir, task_name)
    check_space_fits(space, teacher.spec)
    supernet = load_for_task(teacher_dir, task_name, dropout=0.1).model
    task = get_task(task_name)
    data: TaskData = task.load(
        train_path,
        teacher.tokenizer,
        max_length=min(config.train.max_length, teacher.spec.max_positions),
        doc_stride=config.train.doc_stride,
    )
    run_dir = Path(config.train.output_dir)
    settings = {  # saved in the run (run_settings.json); a resume under others is refused
        "space": space.to_dict(),
        "random_subnets": config.random_subnets,
        "temperature": config.temperature,
        "hard_weight": config.hard_weight,
        "focus_ms": config.focus_ms,
        "hidden_weight": config.hidden_weight,
        "teacher": str(Path(teacher_dir).resolve()),
    }
    loss = SandwichLoss(supernet, teacher.model, space, config, latency)
    result = run_training(
        config.train,
        {"supernet": supernet, "projections": loss.projections},
        [*supernet.named_parameters(), *loss.projections.named_parameters()],
        loss,
        data,
        task.collate,
        None,
        progress,
        settings=settings,
    )
    supernet.eval()
    save_pretrained(supernet, run_dir / "model", tokenizer=teacher.tokenizer, labels=teacher.labels)
    return result


def load_supernet(run_dir: Path) -> Any:
    """The trained supernet of a run directory (a `Pretrained`: model, spec, tokenizer, task)."""
    path = Path(run_dir) / "model"
    if not (path / "config.json").exists():
        raise SpecError(f"{run_dir}: no trained supernet (model/ is missing); run the supernet phase first.")
    return load_pretrained(path)


def load_held_out(supernet: Any, task_name: str, path: Path, max_length: int, examples: Optional[int]) -> TaskData:
    """The held-out data members are scored on (the first `examples` of it, if given), tokenised for the supernet."""
    data = get_task(task_name).load(path, supernet.tokenizer, max_length=max_length)
    if examples:
        labels = data.labels[:examples] if data.labels is not None else None
        data = TaskData(data.features[:examples], data.examples[:examples], labels, data.max_width)
    return data


def inherited_model(supernet: nn.Module, spec: ArchSpec) -> nn.Module:
    """The member `spec` with the supernet's (leading) weights, as an independent model."""
    return extract_subnet(supernet, spec).eval()


def inherited_accuracy(supernet: nn.Module, task_name: str, spec: ArchSpec, data: TaskData) -> float:
    """The task's headline metric (accuracy, or SQuAD F1) of the member with inherited weights on `data`."""
    task = get_task(task_name)
    scored = task.score(inherited_model(supernet, spec), data)
    metrics = scored[0]
    for name in ("accuracy", "f1", "exact_match"):
        if name in metrics:
            return float(metrics[name])
    raise SpecError(f"task {task_name} gives no accuracy metric ({sorted(metrics)}).")
