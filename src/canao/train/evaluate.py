"""Evaluate any checkpoint (canao's or a Hugging Face one) on a task file with the official metrics.

With runtime="compiled" the checkpoint is compiled for this CPU first (fp32 or
bf16 GEMMs) and the same scoring code reads the compiled model's outputs, so
the accuracy a deployment gets is measured, not assumed.

Example::

    metrics, predictions = evaluate_checkpoint(Path("out/model"), "squad", Path("dev-v1.1.json"))
    # predictions: the official {question id: answer text} mapping for SQuAD
    bf16, _ = evaluate_checkpoint(Path("out/model"), "sst2", Path("dev.tsv"), runtime="compiled", precision="bf16")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from canao.errors import SpecError
from canao.models.hf import load_pretrained
from canao.train.finetune import check_task_fits
from canao.train.tasks import MODEL_TASK, get_task

RUNTIMES = ("pytorch", "compiled")
_PAD_LOGIT = -1e4  # span logits of padded positions (never chosen)


class CompiledAsModule:
    """A compiled encoder called like the PyTorch task model (padded torch batch in, torch outputs out), so a
    task's own scoring code scores it. Each row runs unpadded (right padding is cut off by its mask)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def eval(self) -> "CompiledAsModule":
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> Any:
        ids, types = input_ids.numpy(), token_type_ids.numpy()
        lengths = attention_mask.numpy().sum(-1).astype(int)
        rows = [self.compiled.run(ids[b, :n], None, types[b, :n]) for b, n in enumerate(lengths)]
        if self.compiled.task == "classification":
            return torch.from_numpy(np.concatenate([r["logits"] for r in rows]))
        spans = []
        for key in ("start_logits", "end_logits"):
            out = np.full(ids.shape, _PAD_LOGIT, dtype=np.float32)
            for b, (n, r) in enumerate(zip(lengths, rows)):
                out[b, :n] = r[key][0]
            spans.append(torch.from_numpy(out))
        return tuple(spans)


def evaluate_checkpoint(
    model_dir: Path,
    task_name: str,
    data_path: Path,
    *,
    max_length: int = 384,
    doc_stride: int = 128,
    version_2: bool = False,
    runtime: str = "pytorch",
    precision: str = "fp32",
    threads: int = 2,
) -> tuple[dict[str, float], Any]:
    """Official metrics of a checkpoint on a data file, run by PyTorch or by the model compiled here."""
    if runtime not in RUNTIMES:
        raise SpecError(f"`runtime` must be one of {RUNTIMES}, but got {runtime!r}.")
    task = get_task(task_name)
    loaded = load_pretrained(model_dir)
    if loaded.task != MODEL_TASK[task_name]:
        raise SpecError(
            f"{model_dir} is a `{loaded.task}` checkpoint; evaluating {task_name} needs a fine-tuned "
            f"`{MODEL_TASK[task_name]}` head (run `canao finetune --task {task_name}` first)."
        )
    check_task_fits(task_name, loaded)
    data = task.load(
        data_path, loaded.tokenizer, max_length=min(max_length, loaded.spec.max_positions), doc_stride=doc_stride
    )
    model: Any = loaded.model
    if runtime == "compiled":
        if task_name == "lm":
            raise SpecError("compiled evaluation covers the encoder tasks; evaluate a decoder with runtime='pytorch'.")
        from canao.compiler.build import BuildOptions, build
        from canao.compiler.layout import Precision
        from canao.compiler.lower import lower_model

        options = BuildOptions(precision=Precision.parse(precision), threads=threads)
        model = CompiledAsModule(build(lower_model(loaded.model), options).load())
    if task_name == "squad":
        return task.score(model, data, version_2=version_2)
    metrics, predictions = task.score(model, data)
    if predictions is not None and data.examples:
        names = loaded.labels or {}
        predictions = [{"id": e.guid, "prediction": names.get(p, p)} for e, p in zip(data.examples, predictions)]
    return metrics, predictions
