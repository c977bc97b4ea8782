"""Fine-tuning: AdamW with linear warm-up and decay, gradient accumulation, checkpoints and exact resume.

The loop is shared with distillation (distill.py passes its own loss). It is
deterministic with a seed: the data order of epoch e is a permutation drawn
from default_rng(seed + e), and torch's RNG (dropout) is reseeded from
(seed, step) before every optimizer step, so a run resumed from a checkpoint
takes exactly the steps the uninterrupted run would have taken. Checkpoints
(model, optimizer, schedule, step) are written to a temp file and renamed.

Example::

    result = finetune(FinetuneConfig(task="sst2", output_dir=Path("out")), teacher_dir, train_path, dev_path)
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from canao.errors import CanaoError, CheckpointError, DataError, SpecError
from canao.models.hf import load_pretrained, save_pretrained
from canao.storage import exclusive_per, write_text_atomically
from canao.train.progress import Progress
from canao.train.tasks import MODEL_TASK, TASK_NAMES, TaskData, get_task

log = logging.getLogger(__name__)
CONFIG_VERSION = 1


TRAIN_PRECISIONS = ("fp32", "bf16")
_NOT_IDENTITY = ("save_every", "save_every_s", "precision")  # may change between sittings of one run


def train_precision(requested: str = "auto") -> str:
    """The training precision to use: "auto" is bf16 where the CPU computes bf16 natively (AMX or AVX-512
    BF16: oneDNN runs the autocast GEMMs natively; measured 2-2.5x per step with AMX), else fp32 (emulated bf16
    is slower than fp32)."""
    if requested != "auto":
        return requested
    from canao.device import host_simd, simd_level

    return "bf16" if "bf16" in simd_level(host_simd()).native_precisions else "fp32"


@dataclass(frozen=True)
class FinetuneConfig:
    task: str
    output_dir: Path
    epochs: float = 3.0
    batch_size: int = 32
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 128
    doc_stride: int = 128
    eval_every: int = 0  # optimizer steps between evaluations; 0: at the end only
    save_every: int = 100  # optimizer steps between checkpoints
    save_every_s: float = 300.0  # ... and at most this many seconds apart (a slow step count loses little on kill -9)
    max_steps: Optional[int] = None  # stop early (tests, quick runs)
    dropout: float = 0.1
    seed: int = 0
    # > 0: batches of similar length. Each pool of `length_buckets` optimizer steps' worth of shuffled examples
    # is sorted by length, cut into steps, and the steps shuffled: padding (to the longest of each batch)
    # nearly vanishes while every epoch still sees every example once in a seeded order.
    length_buckets: int = 0
    # "bf16": forward and backward under bf16 autocast (weights, gradients and AdamW state stay fp32), 2-2.5x
    # faster per step on CPUs with AMX or AVX-512 BF16. Not part of a run's identity: a run may resume on
    # another CPU in the other precision, since the saved state is fp32 either way.
    precision: str = "fp32"
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise SpecError(f"`task` must be one of {TASK_NAMES}, but got {self.task!r}.")
        if not self.save_every_s > 0 or self.save_every < 1:
            raise SpecError(
                f"`save_every >= 1` and `save_every_s > 0` must hold, but got "
                f"save_every={self.save_every}, save_every_s={self.save_every_s}."
            )
        for name in ("batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise SpecError(f"`{name} >= 1` must hold, but got {getattr(self, name)}.")
        if self.length_buckets < 0:
            raise SpecError(f"`length_buckets >= 0` must hold, but got {self.length_buckets}.")
        if self.precision not in TRAIN_PRECISIONS:
            raise SpecError(
                f"`precision` must be one of {TRAIN_PRECISIONS} (resolve 'auto' with train_precision()), "
                f"but got {self.precision!r}."
            )
        if not (self.lr > 0 and 0 <= self.warmup_ratio < 1 and self.epochs > 0):
            raise SpecError(
                f"need lr > 0, 0 <= warmup_ratio < 1, epochs > 0; got {self.lr}, {self.warmup_ratio}, {self.epochs}."
            )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "output_dir": str(self.output_dir)}, indent=2)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (how often it checkpoints may change between sittings)."""
        data = json.loads(self.to_json())
        for name in _NOT_IDENTITY:
            data.pop(name, None)
        return data


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def total_steps(config: FinetuneConfig, examples: int) -> int:
    per_epoch = math.ceil(examples / (config.batch_size * config.grad_accum))
    steps = max(1, math.ceil(per_epoch * config.epochs))
    return min(steps, config.max_steps) if config.max_steps else steps


def make_optimizer(params: list[tuple[str, torch.nn.Parameter]], config: FinetuneConfig, steps: int):
    """AdamW without decay on biases and LayerNorm gains; linear warm-up then linear decay to 0."""
    decay = [p for n, p in params if p.requires_grad and p.dim() > 1]
    no_decay = [p for n, p in params if p.requires_grad and p.dim() <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    warmup = int(config.warmup_ratio * steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _epoch_order(config: FinetuneConfig, n: int, epoch: int, lengths: Optional[np.ndarray]) -> np.ndarray:
    """The example order of one epoch: a seeded permutation, length-bucketed when the config asks for it."""
    order = np.random.default_rng(config.seed + epoch).permutation(n)
    if not config.length_buckets or lengths is None:
        return order
    per_step = config.batch_size * config.grad_accum
    pool = per_step * config.length_buckets
    rng = np.random.default_rng([config.seed, epoch, 1])
    out: list[np.ndarray] = []
    for first in range(0, n, pool):
        members = order[first : first + pool]
        members = members[np.argsort(lengths[members], kind="stable")]
        steps = [members[i : i + per_step] for i in range(0, len(members), per_step)]
        out.extend(steps[i] for i in rng.permutation(len(steps)))
    return np.concatenate(out)


def _micro_batches(config: FinetuneConfig, n: int, step: int, lengths: Optional[np.ndarray] = None) -> list[np.ndarray]:
    """Index arrays of the micro-batches of optimizer step `step` (a pure function of seed and step)."""
    per_step = config.batch_size * config.grad_accum
    per_epoch = math.ceil(n / per_step)
    epoch, position = divmod(step, per_epoch)
    order = _epoch_order(config, n, epoch, lengths)
    chunk = order[position * per_step : (position + 1) * per_step]
    return [
        chunk[i : i + config.batch_size]
        for i in range(0, len(chunk), config.batch_size)
        if len(chunk[i : i + config.batch_size])
    ]


def feature_lengths(data: TaskData) -> np.ndarray:
    """Tokens per training feature (what a batch is padded to): span-QA windows, (ids, types) pairs, LM blocks."""
    first = data.features[0]
    if hasattr(first, "input_ids"):
        return np.array([len(f.input_ids) for f in data.features])
    if isinstance(first, tuple):
        return np.array([len(f[0]) for f in data.features])
    return np.array([len(f) for f in data.features])


def save_torch_atomically(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside `path`, then rename: a killed save leaves the previous file, never a
    half-written one (checkpoints here, cached teacher outputs in teacher_cache). Here rather than in
    canao.storage, which must not import torch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_checkpoint(
    path: Path, modules: dict[str, torch.nn.Module], optimizer, scheduler, step: int, history: list
) -> None:
    state = {
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "history": history,
    }
    save_torch_atomically(state, path)


@exclusive_per("config", "training run", lambda config: config.output_dir)
def run_training(
    config: FinetuneConfig,
    modules: dict[str, torch.nn.Module],
    params: list,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    data: TaskData,
    collate: Callable,
    evaluate: Optional[Callable[[], dict[str, float]]] = None,
    progress: Optional[Progress] = None,
    settings: Optional[dict[str, Any]] = None,
) -> TrainResult:
    """The shared loop: resumes from output_dir/checkpoint.pt when it exists and matches the config.

    `settings` are what else the caller's run depends on beyond `config` (a distillation's temperature and loss
    weights, a supernet's space): saved beside train_config.json and checked the same way on resume, so that a
    run is never continued under other settings with its old optimizer state. One process at a time per
    output directory (a second gets RunBusyError naming the first)."""
    if not data.features:
        raise DataError("the training data holds no examples (is the file empty or only a header?).")
    steps = total_steps(config, len(data.features))
    optimizer, scheduler = make_optimizer(params, config, steps)
    ckpt = Path(config.output_dir) / "checkpoint.pt"
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    saved_config = Path(config.output_dir) / "train_config.json"
    saved_settings = Path(config.output_dir) / SETTINGS_FILE
    start, history = 0, []
    if ckpt.exists():
        if not saved_config.exists() or _saved_identity(saved_config) != config.identity():
            raise SpecError(f"{ckpt} belongs to a run with other settings; use another --out or delete it.")
        _check_saved_settings(saved_settings, settings, ckpt)
        state = read_checkpoint(ckpt)
        try:
            for name, module in modules.items():
                module.load_state_dict(state["modules"][name])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start, history = int(state["step"]), list(state["history"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # load_state_dict raises RuntimeError
            raise CheckpointError(
                f"{ckpt}: does not hold this run's training state ({type(err).__name__}: {_first_line(err)}); "
                f"delete it to start the run over, or use another --out."
            ) from None
        log.info("resuming %s at step %d of %d", config.output_dir, start, steps)
    write_text_atomically(saved_config, config.to_json())  # a kill mid-write must not leave a run unresumable
    if settings is not None:
        write_text_atomically(saved_settings, json.dumps(settings, indent=2, sort_keys=True))
    loss_value = float(history[-1]["loss"]) if history else float("nan")  # a finished run resumed: its last loss
    lengths = feature_lengths(data) if config.length_buckets else None
    last_save = time.monotonic()
    with StopRequests() as stop:
        for step in range(start, steps):
            loss_value = _train_step(
                config, modules, params, loss_fn, data, collate, optimizer, scheduler, step, lengths
            )
            history.append({"step": step + 1, "loss": loss_value, "lr": scheduler.get_last_lr()[0]})
            if progress:
                progress(step + 1, steps, loss_value)
            if evaluate and config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < steps:
                history[-1].update({f"eval_{k}": v for k, v in evaluate().items()})
            due = (step + 1) % config.save_every == 0 or time.monotonic() - last_save >= config.save_every_s
            if due or step + 1 == steps or stop.requested:
                _save_checkpoint(ckpt, modules, optimizer, scheduler, step + 1, history)
                last_save = time.monotonic()
            if stop.requested and step + 1 < steps:
                raise TrainingStopped(
                    f"stopped by {stop.requested} after step {step + 1} of {steps}; the "
                    f"checkpoint {ckpt} is saved: run the same command again to resume."
                )
    metrics = evaluate() if evaluate else {}
    return TrainResult(steps, loss_value, metrics, history)


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """A run's checkpoint.pt, read as tensors and plain values only (`weights_only=True`): a crafted pickle runs
    no code, and a damaged file is a one-line CheckpointError naming it and how to start over."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for unsafe or damaged files
        raise CheckpointError(
            f"{ckpt}: cannot be read as a canao training checkpoint ({type(err).__name__}: {_first_line(err)}); it is "
            f"damaged or was not written by canao. Delete it to start the run over, or use another --out."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt}: not a canao training checkpoint; delete it to start the run over.")
    return state


def _first_line(err: BaseException, limit: int = 200) -> str:
    return (str(err).strip().splitlines() or [""])[0][:limit]


def _saved_identity(path: Path) -> dict[str, Any]:
    """The identity a run was saved with; settings added since then read as their defaults (they were)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    for name in _NOT_IDENTITY:
        data.pop(name, None)
    added_since = {f.name: f.default for f in fields(FinetuneConfig) if f.name in ("length_buckets",)}
    return {**added_since, **data}


SETTINGS_FILE = "run_settings.json"


def _check_saved_settings(path: Path, settings: Optional[dict[str, Any]], ckpt: Path) -> None:
    """Refuse to resume `ckpt` under settings other than those it was saved with, naming those that differ.
    A checkpoint from before settings were saved (no file) resumes as before: what it ran with is unknown; so
    does one saved before a setting was added (the key is missing), which ran as that setting's default does."""
    if settings is None:
        return
    if not path.exists():
        log.warning("%s predates saved run settings; resuming it without checking them", ckpt)
        return
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        raise SpecError(f"{path} is corrupt; use another --out or delete the run directory.") from None
    wanted = json.loads(json.dumps(settings))  # tuples read back as lists
    differ = sorted(k for k in saved if saved[k] != wanted.get(k))
    if differ:
        changes = ", ".join(f"{k} {saved[k]!r} -> {wanted.get(k)!r}" for k in differ)
        raise SpecError(
            f"{ckpt} was trained with other settings ({changes}): pass the same ones to resume it, or use "
            "another --out."
        )


class TrainingDiverged(CanaoError, ArithmeticError):
    """The loss became NaN or infinite: training stopped before the model was saved."""


class TrainingStopped(CanaoError, RuntimeError):
    """Training was stopped by a signal after saving a checkpoint; the same command resumes it."""


class StopRequests:
    """While active, SIGTERM and SIGINT ask the loop to stop after the current step (it then checkpoints)
    instead of killing it mid-step. Only the main thread can install handlers; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopRequests":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _train_step(
    config: FinetuneConfig,
    modules: dict[str, torch.nn.Module],
    params: list,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    data: TaskData,
    collate: Callable,
    optimizer: Any,
    scheduler: Any,
    step: int,
    lengths: Optional[np.ndarray] = None,
) -> float:
    """One optimizer step over its micro-batches; returns the step's loss."""
    for m in modules.values():
        m.train()
    torch.manual_seed(config.seed * 1_000_003 + step)  # dropout masks depend only on (seed, step)
    optimizer.zero_grad(set_to_none=True)
    micro = _micro_batches(config, len(data.features), step, lengths)
    total = sum(len(i) for i in micro)
    loss_value = 0.0
    for index in micro:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            loss = loss_fn(collate(data, index)).float() * (len(index) / total)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss is {float(loss.detach())} at step {step + 1}: the run diverged (is the learning "
                f"rate {config.lr:g} too high?). Nothing more is trained or saved; start again with a lower --lr and "
                f"another --out (or delete {config.output_dir})."
            )
        loss.backward()
        loss_value += float(loss.detach())
    torch.nn.utils.clip_grad_norm_([p for _, p in params if p.requires_grad], 1.0)
    optimizer.step()
    scheduler.step()
    return loss_value


def finetune(
    config: FinetuneConfig,
    model_dir: Optional[Path],
    train_path: Path,
    eval_path: Optional[Path] = None,
    progress: Optional[Progress] = None,
    labels: Optional[dict[int, str]] = None,
) -> TrainResult:
    """Fine-tune a checkpoint (default: the bundled teacher) on a task and save it in the HF layout."""
    from canao.models.teacher import teacher_dir

    task = get_task(config.task)
    torch.manual_seed(config.seed)  # the fresh task head's initialisation
    loaded = load_for_task(model_dir or teacher_dir(), config.task, dropout=config.dropout)
    kwargs = {"max_length": config.max_length, "doc_stride": config.doc_stride}
    train = task.load(train_path, loaded.tokenizer, **kwargs)
    dev = task.load(eval_path, loaded.tokenizer, **kwargs) if eval_path else None
    model = loaded.model

    def evaluate() -> dict[str, float]:
        return task.score(model, dev)[0] if dev is not None else {}

    result = run_training(
        config,
        {"model": model},
        list(model.named_parameters()),
        lambda batch: task.loss(task.forward(model, batch), batch),
        train,
        task.collate,
        evaluate,
        progress,
    )
    model.eval()
    save_pretrained(model, Path(config.output_dir) / "model", tokenizer=loaded.tokenizer, labels=labels)
    (Path(config.output_dir) / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    return result


def load_for_task(model_dir: Path, task_name: str, dropout: float = 0.0) -> Any:
    """Load a checkpoint with the task's head, or explain why it cannot serve the task."""
    try:
        loaded = load_pretrained(model_dir, task=MODEL_TASK[task_name], dropout=dropout)
    except SpecError as err:
        raise SpecError(f"{model_dir} cannot serve task {task_name}: {err}") from err
    check_task_fits(task_name, loaded)
    return loaded


def check_task_fits(task_name: str, loaded: Any) -> None:
    """A clear error when a checkpoint cannot serve a task (kind, head, vocabulary vs tokenizer)."""
    want = "decoder" if task_name == "lm" else "encoder"
    if loaded.spec.kind != want:
        raise SpecError(
            f"task {task_name} needs an {want} checkpoint, but {loaded.directory} holds a {loaded.spec.kind}."
        )
    if loaded.tokenizer is None:
        raise SpecError(f"{loaded.directory} has no tokenizer files; task {task_name} needs one.")
    vocab = loaded.tokenizer.get_vocab_size()
    if vocab > loaded.spec.vocab_size:
        raise SpecError(
            f"the tokenizer of {loaded.directory} has {vocab} tokens, but the model's vocab_size is "
            f"{loaded.spec.vocab_size}; they do not belong together."
        )
    if task_name != "lm" and task_name != "squad" and getattr(loaded.model, "classifier", None) is not None:
        if loaded.model.classifier.out_features != get_task(task_name).num_labels:
            raise SpecError(
                f"{loaded.directory} has a {loaded.model.classifier.out_features}-way classifier, but "
                f"{task_name} has {get_task(task_name).num_labels} labels."
            )
