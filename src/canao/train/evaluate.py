"""Evaluate any checkpoint (canao's or a Hugging Face one) on a task file with the official metrics.

Example::

    metrics, predictions = evaluate_checkpoint(Path("out/model"), "squad", Path("dev-v1.1.json"))
    # predictions: the official {question id: answer text} mapping for SQuAD
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from canao.errors import SpecError
from canao.models.hf import load_pretrained
from canao.train.finetune import check_task_fits
from canao.train.tasks import MODEL_TASK, get_task


def evaluate_checkpoint(model_dir: Path, task_name: str, data_path: Path, *, max_length: int = 384,
                        doc_stride: int = 128, version_2: bool = False) -> tuple[dict[str, float], Any]:
    task = get_task(task_name)
    loaded = load_pretrained(model_dir)
    if loaded.task != MODEL_TASK[task_name]:
        raise SpecError(f"{model_dir} is a `{loaded.task}` checkpoint; evaluating {task_name} needs a fine-tuned "
                        f"`{MODEL_TASK[task_name]}` head (run `canao finetune --task {task_name}` first).")
    check_task_fits(task_name, loaded)
    data = task.load(data_path, loaded.tokenizer, max_length=min(max_length, loaded.spec.max_positions),
                     doc_stride=doc_stride)
    if task_name == "squad":
        return task.score(loaded.model, data, version_2=version_2)
    metrics, predictions = task.score(loaded.model, data)
    if predictions is not None and data.examples:
        names = loaded.labels or {}
        predictions = [{"id": e.guid, "prediction": names.get(p, p)} for e, p in zip(data.examples, predictions)]
    return metrics, predictions
