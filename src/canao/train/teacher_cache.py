"""The teacher's outputs on a training set, computed once and shared by every student distilled from it.

Prediction-layer distillation (the second stage of TinyBERT's recipe) needs only the teacher's logits.
The teacher runs in eval mode, so its logits for a feature never change; recomputing them on every step
of every epoch, and again for every student, repeats a forward pass that on SQuAD at 384 tokens costs more
than the whole training step of a quarter-size student. `TeacherOutputs` computes them once, in
length-sorted batches, and keeps them in the cache directory under a digest of the teacher's weights, the
task and the features' token ids; a second student of the same teacher and data reads the file.

Span QA keeps a start and an end logit per token of each feature (stored flat with offsets), sequence
classification one vector per feature. Decoders are not cached (vocabulary-sized logits per token).

Example::

    outputs = TeacherOutputs.load_or_compute(teacher, "squad", train, teacher_dir)
    t_start, t_end = outputs.gather(index, width=batch["input_ids"].shape[1])
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from canao.storage import cache_root
from canao.train.finetune import feature_lengths, save_torch_atomically
from canao.train.tasks import MODEL_TASK, TaskData, get_task

CACHE_VERSION = 1
CACHED_TASKS = ("qa", "classification")
BATCH = 64
PAD_LOGIT = -1e4  # beyond a feature's length: masked out of the soft loss anyway
SAVE_EVERY_S = 300.0  # how often a long pass saves the batches it has done


def _save_partial(path: Path, batches: int, done: list) -> None:
    """The first `batches` batches' outputs, in pass order, flat (qa: (tokens, 2); classification: (n, labels))."""
    save_torch_atomically(
        {"batches": batches, "values": torch.cat(done) if done[0].dim() == 2 else torch.stack(done)}, path
    )


def _resume(path: Path, kind: str, order: np.ndarray, lengths: np.ndarray, per_feature: list) -> int:
    """Fill `per_feature` from a partial pass saved at `path`; the number of batches it covers (0: none, or a
    file that does not fit this pass, which is then ignored)."""
    if not path.exists():
        return 0
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        batches, values = int(saved["batches"]), saved["values"]
        done = order[: batches * BATCH]
        if kind == "qa":
            sizes = [int(lengths[i]) for i in done]
            if values.shape[0] != sum(sizes):
                return 0
            for i, part in zip(done, torch.split(values, sizes)):
                per_feature[i] = part.clone()
        else:
            if values.shape[0] != len(done):
                return 0
            for i, row in zip(done, values):
                per_feature[i] = row.clone()
        return batches
    except Exception:  # damaged: start over (the final file is what is trusted)
        return 0


def cacheable(task_name: str) -> bool:
    return MODEL_TASK[task_name] in CACHED_TASKS


def _digest(teacher_dir: Path, task_name: str, data: TaskData, collate: Callable, precision: str = "fp32") -> str:
    tag = "" if precision == "fp32" else f"|{precision}"  # fp32 keys stay those of caches written before
    h = hashlib.sha256(f"v{CACHE_VERSION}|{task_name}|{len(data.features)}{tag}".encode())
    for name in sorted(p.name for p in Path(teacher_dir).iterdir() if p.suffix in (".safetensors", ".bin", ".json")):
        h.update(name.encode())
        h.update((Path(teacher_dir) / name).read_bytes())
    for start in range(0, len(data.features), 4096):  # the features' ids, as the training batches see them
        batch = collate(data, np.arange(start, min(start + 4096, len(data.features))))
        h.update(batch["input_ids"].numpy().tobytes())
        h.update(batch["token_type_ids"].numpy().tobytes())
    return h.hexdigest()[:20]


@dataclass
class TeacherOutputs:
    """Per-feature teacher logits: span QA as flat (start, end) with offsets; classification as (N, labels)."""

    kind: str  # "qa" or "classification"
    values: torch.Tensor  # qa: (total_tokens, 2); classification: (N, labels)
    offsets: Optional[torch.Tensor]  # qa: (N + 1,) start of each feature in `values`

    def gather(self, index: torch.Tensor, width: int) -> Any:
        """The teacher's outputs for a batch of feature indices, padded to `width` tokens (qa)."""
        if self.kind == "classification":
            return self.values[index]
        assert self.offsets is not None
        out = torch.full((len(index), width, 2), PAD_LOGIT, dtype=self.values.dtype)
        for row, i in enumerate(index.tolist()):
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            out[row, : b - a] = self.values[a:b]
        return out[..., 0], out[..., 1]

    @classmethod
    def compute(
        cls,
        model: torch.nn.Module,
        task_name: str,
        data: TaskData,
        progress: Optional[Callable] = None,
        precision: str = "fp32",
        partial: Optional[Path] = None,
        save_every_s: float = SAVE_EVERY_S,
    ) -> "TeacherOutputs":
        """The teacher's outputs on every feature; with precision "bf16", under the same bf16 autocast the live
        teacher runs in when training is bf16 (about half the time of fp32 on a CPU with AMX).

        With `partial`, the batches done so far are saved there every `save_every_s` seconds (atomically) and a
        later call resumes after them: on SQuAD at 384 tokens the pass takes over an hour on 2 cores, and a
        killed run must not start it again. `load_or_compute` removes the file once the cache is saved."""
        task, kind = get_task(task_name), MODEL_TASK[task_name]
        lengths = feature_lengths(data)
        order = np.argsort(lengths, kind="stable")
        total = (len(order) + BATCH - 1) // BATCH
        model.eval()
        per_feature: list[Optional[torch.Tensor]] = [None] * len(data.features)
        first = _resume(partial, kind, order, lengths, per_feature) if partial else 0
        saved_at = time.monotonic()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        with torch.inference_mode(), autocast:
            for done in range(first, total):
                index = order[done * BATCH : (done + 1) * BATCH]
                out = task.forward(model, task.collate(data, index))
                out = tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()
                for row, i in enumerate(index):
                    if kind == "qa":
                        n = lengths[i]
                        per_feature[i] = torch.stack((out[0][row, :n], out[1][row, :n]), dim=-1).clone()
                    else:
                        per_feature[i] = out[row].clone()
                if partial and done + 1 < total and time.monotonic() - saved_at >= save_every_s:
                    _save_partial(partial, done + 1, [per_feature[i] for i in order[: (done + 1) * BATCH]])
                    saved_at = time.monotonic()
                if progress:
                    progress(done + 1, total, float("nan"))
        tensors = [t for t in per_feature if t is not None]
        if kind == "classification":
            return cls(kind, torch.stack(tensors), None)
        offsets = torch.tensor(np.concatenate(([0], np.cumsum(lengths))), dtype=torch.long)
        return cls(kind, torch.cat(tensors), offsets)

    @classmethod
    def load_or_compute(
        cls,
        model: torch.nn.Module,
        task_name: str,
        data: TaskData,
        teacher_dir: Path,
        progress: Optional[Callable] = None,
        cache_dir: Optional[Path] = None,
        precision: str = "fp32",
        save_every_s: float = SAVE_EVERY_S,
    ) -> "TeacherOutputs":
        """The cached outputs for this teacher, data and precision, computing and saving them (atomically) if
        absent; a pass that was killed resumes from its last partial save (see `compute`)."""
        task = get_task(task_name)
        key = _digest(teacher_dir, task_name, data, task.collate, precision)
        directory = cache_dir or cache_root() / "teacher-outputs"
        path = directory / f"{key}.pt"
        if path.exists():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                return cls(saved["kind"], saved["values"], saved.get("offsets"))
            except Exception:  # a damaged cache file is recomputed, never trusted
                path.unlink(missing_ok=True)
        partial = directory / f"{key}.partial.pt"
        outputs = cls.compute(model, task_name, data, progress, precision, partial=partial, save_every_s=save_every_s)
        save_torch_atomically({"kind": outputs.kind, "values": outputs.values, "offsets": outputs.offsets}, path)
        partial.unlink(missing_ok=True)
        return outputs
