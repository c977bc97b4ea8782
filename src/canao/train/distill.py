"""Knowledge distillation of a student ArchSpec from a fine-tuned teacher.

loss = hard * task_loss(gold) + logits * KD(T) + hidden * sum_l MSE(P_l h_s[l], h_t[m(l)])
       + attention * mean_l KL(A_t[m(l)] || A_s[l])
over the student's layers l with the uniform layer map m(l) = round(l * L_t / L_s)
(TinyBERT's mapping; embeddings map to embeddings). P_l are learned linear
projections from the student's hidden size to the teacher's (trained with the
student, dropped at the end), so students of any hidden size distill. The
student starts from the teacher's weights by elastic slicing when its spec is
a slice of the teacher's (the CANAO supernet's weight sharing), else from
random initialisation.

Example::

    result = distill(DistillConfig(FinetuneConfig("sst2", Path("out"))), teacher_dir, student_spec, train, dev)
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from canao.arch import ArchSpec
from canao.errors import SpecError
from canao.models.elastic import check_sliceable, extract_subnet
from canao.models.heads import build_model
from canao.models.hf import load_pretrained, save_pretrained
from canao.storage import exclusive_per
from canao.train.finetune import FinetuneConfig, TrainResult, load_for_task, run_training
from canao.train.losses import attention_kl, hidden_mse, soft_logit_loss, value_relation_kl
from canao.train.progress import Progress
from canao.train.tasks import MODEL_TASK, TaskData, get_task
from canao.train.teacher_cache import TeacherOutputs, cacheable

INITS = ("slice", "prune")
INDEX_KEY = "_feature_index"  # batches of a cached stage carry their features' indices under this key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    train: FinetuneConfig
    temperature: float = 2.0
    hard_weight: float = 1.0  # task loss on gold labels
    logit_weight: float = 1.0
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    value_weight: float = 0.0  # MiniLM value relations of the last layers (encoders)
    relation_heads: int = 0  # relation heads for value relations; 0: the largest divisor of both widths <= 12
    # Two stages (TinyBERT): this many epochs of intermediate-layer distillation only (hidden states,
    # attention, values) into <out>/intermediate, then `train.epochs` of prediction-layer distillation only
    # (logits with temperature, labels) from that student. 0: one stage with every term.
    intermediate_epochs: float = 0.0
    # A stage without intermediate terms reads the teacher's logits from a cache computed once per teacher and
    # training set (train/teacher_cache.py) instead of running the teacher on every step; same values.
    cache_teacher_outputs: bool = True
    # TinyBERT-style augmentation (GLUE tasks): this many variants of each training example with words replaced
    # by their teacher-embedding neighbours (canao.data.augment), trained on the teacher's logits only.
    augment_copies: int = 0
    augment_prob: float = 0.4
    # How the student starts: "slice" keeps the teacher's leading heads, units and first layers (elastic
    # slicing); "prune" keeps the most important heads and FFN units (gradient importance on `prune_batches`
    # training batches, models/prune.py) of the teacher layers the uniform layer map targets, or of
    # `prune_layers` (0-based). Either falls back to random weights when the student's shape is not a part of
    # the teacher's.
    init: str = "slice"
    prune_batches: int = 32
    prune_layers: Optional[tuple[int, ...]] = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise SpecError(f"`temperature > 0` must hold, but got {self.temperature}.")
        if self.augment_copies < 0 or not 0.0 < self.augment_prob <= 1.0:
            raise SpecError(
                f"need augment_copies >= 0 and 0 < augment_prob <= 1; got {self.augment_copies}, {self.augment_prob}."
            )
        if self.init not in INITS or self.prune_batches < 1:
            raise SpecError(f"need init in {INITS} and prune_batches >= 1; got {self.init!r}, {self.prune_batches}.")
        if self.prune_layers is not None and (
            list(self.prune_layers) != sorted(set(self.prune_layers)) or min(self.prune_layers, default=0) < 0
        ):
            raise SpecError(f"prune_layers must be distinct ascending layer indices >= 0; got {self.prune_layers}.")
        if self.relation_heads < 0 or self.intermediate_epochs < 0 or self.value_weight < 0:
            raise SpecError(
                "need relation_heads >= 0, intermediate_epochs >= 0 and value_weight >= 0; got "
                f"{self.relation_heads}, {self.intermediate_epochs}, {self.value_weight}."
            )


_NOT_SETTINGS = ("train", "cache_teacher_outputs")  # its own check; the same values either way


def _settings(config: DistillConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in _NOT_SETTINGS}


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index for each student hidden-state index 0..L_s (0 = embeddings)."""
    return [round(i * teacher_layers / student_layers) for i in range(student_layers + 1)]


def default_prune_layers(student_layers: int, teacher_layers: int) -> tuple[int, ...]:
    """The teacher layers (0-based) a pruned student keeps by default: those whose outputs the uniform layer
    map targets (1, 3, 5 of 6 for three layers)."""
    return tuple(k - 1 for k in layer_map(student_layers, teacher_layers)[1:])


def forward_with_internals(model: nn.Module, task: str, batch: dict[str, torch.Tensor]):
    """(task outputs, hidden states, attention maps) of a canao task model."""
    if MODEL_TASK[task] == "lm":
        out = model(batch["input_ids"], output_hidden_states=True, output_attentions=True)
        return out.logits, out.hidden_states, out.attentions, None
    enc = model.encoder(
        batch["input_ids"],
        batch["attention_mask"],
        batch["token_type_ids"],
        output_hidden_states=True,
        output_attentions=True,
        output_values=True,
    )
    internals = (enc.hidden_states, enc.attentions, enc.values)
    if MODEL_TASK[task] == "classification":
        return (model.classifier(model.dropout(enc.pooled)), *internals)
    logits = model.qa(enc.last_hidden_state)
    return ((logits[..., 0], logits[..., 1]), *internals)


class DistillationLoss(nn.Module):
    """Holds the hidden-state projections and combines the four loss terms."""

    def __init__(
        self,
        config: DistillConfig,
        student: ArchSpec,
        teacher: ArchSpec,
        task: str,
        teacher_layers: Optional[list[int]] = None,
    ) -> None:
        """`teacher_layers`: the teacher layers a pruned student's layers came from; each student layer then
        mimics the output of its own teacher layer instead of the uniform layer map's."""
        super().__init__()
        self.config, self.task = config, task
        self.map = layer_map(student.num_layers, teacher.num_layers)
        if teacher_layers is not None:
            self.map = [0] + [k + 1 for k in teacher_layers]
        self.projections = nn.ModuleList(nn.Linear(student.hidden, teacher.hidden) for _ in self.map)
        self.relation_heads = 0
        if config.value_weight:
            if MODEL_TASK[task] == "lm":
                raise SpecError("value relations are implemented for encoders; set value_weight=0 for a decoder.")
            widths = (
                student.layers[-1].heads * student.layers[-1].head_dim,
                teacher.layers[-1].heads * teacher.layers[-1].head_dim,
            )
            self.relation_heads = config.relation_heads or max(
                r for r in range(1, 13) if all(w % r == 0 for w in widths)
            )
            if any(w % self.relation_heads for w in widths):
                raise SpecError(
                    f"relation_heads={self.relation_heads} must divide both last-layer attention widths {widths}."
                )

    def forward(self, student_out, teacher_out, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        (s_logits, s_hidden, s_attn, s_values), (t_logits, t_hidden, t_attn, t_values) = student_out, teacher_out
        cfg, task = self.config, get_task(self.task)
        mask = batch.get("attention_mask")
        loss = cfg.hard_weight * task.loss(s_logits, batch) if cfg.hard_weight else 0.0
        if cfg.logit_weight:
            pairs = zip(s_logits, t_logits) if isinstance(s_logits, tuple) else [(s_logits, t_logits)]
            kd = [soft_logit_loss(_mask_tokens(s, mask), _mask_tokens(t, mask), cfg.temperature) for s, t in pairs]
            loss = loss + cfg.logit_weight * sum(kd) / len(kd)
        if cfg.hidden_weight:
            terms = [hidden_mse(s_hidden[i], t_hidden[j], self.projections[i], mask) for i, j in enumerate(self.map)]
            loss = loss + cfg.hidden_weight * sum(terms) / len(terms)
        if cfg.attention_weight:
            terms = [attention_kl(s_attn[i - 1], t_attn[j - 1], mask) for i, j in enumerate(self.map) if i > 0]
            loss = loss + cfg.attention_weight * sum(terms) / len(terms)
        if cfg.value_weight:
            loss = loss + cfg.value_weight * value_relation_kl(s_values[-1], t_values[-1], self.relation_heads, mask)
        return loss


def _mask_tokens(logits: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Span-QA logits over tokens (B, T): padded tokens get no probability mass."""
    if mask is not None and logits.shape == mask.shape:
        return logits.masked_fill(mask == 0, -1e4)
    return logits


def initial_student(
    teacher_model: nn.Module, teacher_spec: ArchSpec, spec: ArchSpec, task: str, num_labels: int, dropout: float
) -> tuple[nn.Module, str]:
    """The student, sliced from the teacher when its spec allows (with dropout), else freshly initialised."""
    student = build_model(spec, MODEL_TASK[task], num_labels=num_labels, dropout=dropout)
    try:
        check_sliceable(teacher_spec, spec)
    except SpecError as err:
        log.info("student is not a slice of the teacher (%s); it starts from random weights", err)
        return student, "random"
    student.load_state_dict(extract_subnet(teacher_model, spec).state_dict())
    return student, "sliced from the teacher"


def _labelled_batches(task: Any, data: TaskData, batch_size: int, count: int, seed: int) -> list[dict]:
    """`count` random batches of labelled training examples (augmented variants carry no label)."""
    labels = data.labels or [0] * len(data.features)
    pool = np.array([i for i, y in enumerate(labels) if y is not None])
    if not len(pool):
        raise SpecError("the training data has no labelled example to score the teacher's units on.")
    order = np.resize(np.random.default_rng(seed).permutation(pool), batch_size * count)  # small sets repeat
    return [task.collate(data, order[i * batch_size : (i + 1) * batch_size]) for i in range(count)]


def pruned_student(
    config: DistillConfig, teacher: nn.Module, spec: ArchSpec, train: TaskData, num_labels: int
) -> tuple[nn.Module, str, Optional[list[int]]]:
    """The student pruned from `teacher`: the most important heads and FFN units of the teacher layers
    `config.prune_layers`, by default those whose outputs the uniform layer map targets (1, 3, 5 of 6 for three
    layers), and the teacher layers it kept; a student larger than the teacher in any part starts from random
    weights.

    Why the uniform layers: on SST-2 (MiniLM-L6 teacher, 89.68) an L3 H384 A4 F384 student pruned from layers
    1, 3, 5 reached 87.04 after the same distillation that took one pruned from layers 3, 4, 5 (the layers whose
    pruned model started closest to the teacher's predictions) to 84.63, and the leading slice (0, 1, 2) to
    84.40: a student needs its teacher's lower layers more than a close start."""
    from canao.models.prune import encoder_spec, pruned_model, unit_importance

    cfg = config.train
    task = get_task(cfg.task)
    teacher_spec = encoder_spec(teacher)
    try:
        check_sliceable(replace(teacher_spec, layers=teacher_spec.layers[: spec.num_layers]), spec)
    except SpecError as err:
        log.info("student is not a part of the teacher (%s); it starts from random weights", err)
        return build_model(spec, MODEL_TASK[cfg.task], num_labels=num_labels, dropout=cfg.dropout), "random", None
    layers = list(config.prune_layers or default_prune_layers(spec.num_layers, teacher_spec.num_layers))
    if len(layers) != spec.num_layers or layers[-1] >= teacher_spec.num_layers:
        raise SpecError(
            f"prune_layers {layers} must name {spec.num_layers} of the teacher's layers "
            f"0..{teacher_spec.num_layers - 1}."
        )
    teacher.eval()
    batches = _labelled_batches(task, train, cfg.batch_size, config.prune_batches, cfg.seed)
    scores = unit_importance(teacher, lambda m, b: task.loss(task.forward(m, b), b), batches)
    log.info("pruned student: teacher layers %s, most important heads and FFN units", layers)
    student = build_model(spec, MODEL_TASK[cfg.task], num_labels=num_labels, dropout=cfg.dropout)
    student.load_state_dict(pruned_model(teacher, spec, scores, layers).state_dict())
    return student, f"pruned from the teacher (its layers {layers}, most important heads and FFN units)", layers


@exclusive_per("config", "distillation run", lambda config: config.train.output_dir)
def distill(
    config: DistillConfig,
    teacher_dir: Path,
    spec: ArchSpec,
    train_path: Path,
    eval_path: Optional[Path] = None,
    progress: Optional[Progress] = None,
    slice_from: Optional[Path] = None,
    start_from: Optional[Path] = None,
) -> TrainResult:
    """Distill `spec` from the task-fine-tuned teacher; the student is saved in the HF layout.

    The student starts as a slice of the teacher, or of `slice_from` (a checkpoint of the teacher's shape,
    such as the search's supernet, whose members were trained to work as slices), or as `start_from`: a
    finished student of exactly this shape, trained on in a new run (a longer schedule added in a later sitting,
    with its own learning-rate schedule: a warm restart).

    With `intermediate_epochs`, two stages run (each resumable on its own): intermediate layers only into
    <out>/intermediate, then the prediction layer only into <out>, starting from the first stage's student.
    The teacher and the data are loaded once for both."""
    cfg = config.train
    task = get_task(cfg.task)
    teacher = load_for_task(teacher_dir, cfg.task)
    if teacher.task != MODEL_TASK[cfg.task]:
        log.warning("%s has no %s head: distilling from an untrained head", teacher_dir, cfg.task)
    if spec.vocab_size != teacher.spec.vocab_size:
        raise SpecError(
            f"the student's vocab_size {spec.vocab_size} differs from the teacher's "
            f"{teacher.spec.vocab_size}; they share the tokenizer."
        )
    if start_from is not None:
        if slice_from is not None:
            raise SpecError("give slice_from (a checkpoint to slice) or start_from (a student to train on), not both.")
        given = load_pretrained(start_from).spec
        if given != spec:
            raise SpecError(
                f"{start_from} holds {given.describe()}, not the student {spec.describe()}: start_from goes on "
                "training a student of the same shape; distill another shape from the teacher instead."
            )
    _check_start(Path(cfg.output_dir), start_from)
    teacher.model.eval()
    kwargs = {"max_length": cfg.max_length, "doc_stride": cfg.doc_stride}
    train = task.load(train_path, teacher.tokenizer, **kwargs)
    if config.augment_copies:
        train = _augmented(config, teacher, train)
    dev = task.load(eval_path, teacher.tokenizer, **kwargs) if eval_path else None
    source = load_for_task(slice_from, cfg.task).model if slice_from is not None else None
    if not config.intermediate_epochs:
        return _distill_stage(config, teacher, spec, train, dev, progress, start_from=start_from, source=source)
    out = Path(cfg.output_dir)
    first = replace(
        config,
        train=replace(cfg, output_dir=out / "intermediate", epochs=config.intermediate_epochs),
        hard_weight=0.0,
        logit_weight=0.0,
        intermediate_epochs=0.0,
    )
    if not (out / "intermediate" / "model" / "config.json").exists():
        _distill_stage(first, teacher, spec, train, None, progress, start_from=start_from, source=source)
    return _distill_stage(
        prediction_stage(config), teacher, spec, train, dev, progress, start_from=out / "intermediate" / "model"
    )


def prediction_stage(config: DistillConfig) -> DistillConfig:
    """`config` as its prediction-layer stage alone: no intermediate terms and no first stage. Going on from a
    finished student (more epochs) must use this, not just `intermediate_epochs=0`, which means one stage with
    every term: the teacher run with its internals on every step (no logit cache), a slower, other recipe."""
    return replace(config, hidden_weight=0.0, attention_weight=0.0, value_weight=0.0, intermediate_epochs=0.0)


START_MARK = "started_from.txt"


def _check_start(out: Path, start_from: Optional[Path]) -> None:
    """Refuse to resume a run that started from another student: a run's saved settings (the resume check) do
    not name where its student came from, so a run started with start_from records it here."""
    mark = out / START_MARK
    recorded = mark.read_text() if mark.exists() else None
    wanted = str(Path(start_from).resolve()) if start_from is not None else None
    started = any((out / sub / "checkpoint.pt").exists() for sub in (".", "intermediate"))
    if started and recorded != wanted:
        raise SpecError(
            f"{out} holds a run started from {recorded or 'the teacher'}, not from {wanted or 'the teacher'}: "
            "pass the same start (it resumes) or another output directory."
        )
    if wanted is not None and not started:
        out.mkdir(parents=True, exist_ok=True)
        mark.write_text(wanted)


def _augmented(config: DistillConfig, teacher: Any, train: TaskData) -> TaskData:
    """The training set plus `augment_copies` neighbour-replaced variants of each example (unlabelled)."""
    from canao.data.augment import NeighbourReplacer, augment_examples

    task = get_task(config.train.task)
    if MODEL_TASK[config.train.task] != "classification" or not hasattr(task, "featurize"):
        raise SpecError(f"augmentation covers the GLUE classification tasks, not {config.train.task}.")
    embeddings = getattr(teacher.model, "encoder", teacher.model).embed.token.weight.detach().numpy()
    replacer = NeighbourReplacer.from_vocab(teacher.tokenizer.get_vocab(), embeddings)
    extra = augment_examples(
        train.examples, replacer, config.augment_copies, config.augment_prob, seed=config.train.seed
    )
    more = task.featurize(extra, teacher.tokenizer, config.train.max_length)
    log.info("augmented %d training examples with %d variants", len(train.features), len(more.features))
    labels = list(train.labels or [None] * len(train.features)) + list(more.labels or [])
    return TaskData(train.features + more.features, train.examples + more.examples, labels, train.max_width)


def _distill_stage(
    config: DistillConfig,
    teacher: Any,
    spec: ArchSpec,
    train: TaskData,
    dev: Optional[TaskData],
    progress: Optional[Progress],
    start_from: Optional[Path] = None,
    source: Optional[torch.nn.Module] = None,
) -> TrainResult:
    """One run of the training loop: the student (sliced from `source`, default the teacher, or loaded from
    `start_from`) distilled from `teacher`."""
    cfg = config.train
    task = get_task(cfg.task)
    num_labels = getattr(getattr(teacher.model, "classifier", None), "out_features", 2)
    torch.manual_seed(cfg.seed)
    kept: Optional[list[int]] = None
    if start_from is not None:
        student, origin = load_for_task(start_from, cfg.task, dropout=cfg.dropout).model, f"from {start_from}"
    elif config.init == "prune":
        student, origin, kept = pruned_student(
            config, teacher.model if source is None else source, spec, train, num_labels
        )
    else:
        student, origin = initial_student(
            teacher.model if source is None else source, teacher.spec, spec, cfg.task, num_labels, cfg.dropout
        )
        if source is not None and origin != "random":
            origin = "sliced from the `slice_from` checkpoint"
    criterion = DistillationLoss(config, spec, teacher.spec, cfg.task, teacher_layers=kept)
    collate: Callable = task.collate
    if config.hidden_weight or config.attention_weight or config.value_weight:

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.no_grad():
                t_out = forward_with_internals(teacher.model, cfg.task, batch)
            return criterion(forward_with_internals(student, cfg.task, batch), t_out, batch)

    else:  # prediction layer only: no internals, and the teacher's logits from the cache when the task allows
        cached = None
        if config.cache_teacher_outputs and cacheable(cfg.task) and config.logit_weight:
            cached = TeacherOutputs.load_or_compute(
                teacher.model, cfg.task, train, teacher.directory, progress, precision=cfg.precision
            )

            def collate(data: TaskData, index: Any) -> dict[str, torch.Tensor]:
                return {**task.collate(data, index), INDEX_KEY: torch.as_tensor(index)}

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            index = batch.pop(INDEX_KEY, None)
            if cached is not None and index is not None:
                t_logits = cached.gather(index, batch["input_ids"].shape[1])
            else:
                with torch.no_grad():
                    t_logits = task.forward(teacher.model, batch)
            return criterion((task.forward(student, batch), None, None, None), (t_logits, None, None, None), batch)

    def evaluate() -> dict[str, float]:
        return task.score(student, dev)[0] if dev is not None else {}

    params = list(student.named_parameters()) + list(criterion.named_parameters())
    result = run_training(
        cfg,
        {"student": student, "criterion": criterion},
        params,
        loss_fn,
        train,
        collate,
        evaluate,
        progress,
        settings=_settings(config),
    )
    student.eval()
    save_pretrained(student, Path(cfg.output_dir) / "model", tokenizer=teacher.tokenizer, labels=teacher.labels)
    summary: dict[str, Any] = {"student": spec.describe(), "initialised": origin, "metrics": result.metrics}
    if kept is not None:
        summary["teacher_layers"] = kept
    (Path(cfg.output_dir) / "metrics.json").write_text(json.dumps(summary, indent=2))
    return result
