"""Compiler benchmark: canao vs PyTorch eager, ONNX Runtime, OpenVINO, LiteRT and CTranslate2, side by side in one run.

Batch 1, the same thread count for every runtime (default 2), warm-up
first, median and p90 over >= 20 timed calls (time.perf_counter), the peers
timed in alternating rounds so that machine noise hits them alike. Models:
(a) the MiniLM teacher (real weights) at 128 and 384 tokens, (b) BERT-base
shape (random weights) at 128 and 384, (c) GPT-2 small shape (random
weights), one decode step at a context of 128 with a KV cache (OpenVINO and
LiteRT run an exported step that takes and returns the cache as tensors).
Every runtime's output is checked against PyTorch fp32 before it is timed.

Precisions: fp32 for every runtime (the like-for-like comparison), plus
canao with bf16 matrix products and with dynamic int8 GEMMs, and the
reduced-precision peers a user would weigh them against: PyTorch with bf16
weights (oneDNN's bf16 kernels), ONNX Runtime with dynamic int8
quantization of the linear layers, OpenVINO at its default precision and
with NNCF int8, and LiteRT's dynamic-range int8 (on the encoder's layers).
Also: this machine's measured fp32 FMA, bf16 and int8 dot-product peaks and
the canao GEMMs' fractions of them on 768x768x128 and 3072x768x128.

    .venv/bin/python benchmarks/compiler.py                 # print the table
    .venv/bin/python benchmarks/compiler.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from canao.arch import ArchSpec
from canao.compiler.build import BuildOptions, build
from canao.compiler.layout import Precision
from canao.compiler.lower import lower_model
from canao.compiler.tune import bench_library, measure_shape
from canao.device import describe_machine, resolve_simd, simd_level
from canao.latency.timing import TimingStats, measure_interleaved_ms
from canao.models import build_model, load_teacher
from canao.models.decoder import KVCache

BERT_BASE = ArchSpec.uniform("encoder", vocab_size=30522, max_positions=512, hidden=768, num_layers=12, heads=12)
GPT2_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers" / "gpt2"
GPT2_SMALL = ArchSpec.uniform("decoder", vocab_size=50257, max_positions=1024, hidden=768, num_layers=12, heads=12)


@dataclass
class Row:
    model: str
    setting: str
    runtime: str
    stats: TimingStats
    gflop: float
    max_abs_diff: float
    precision: str = "fp32"


class _LastHidden(torch.nn.Module):
    """Tensor-in/tensor-out wrapper for ONNX export."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(ids).last_hidden_state


def _onnx_path(model: torch.nn.Module, seq: int, workdir: Path) -> Path:
    """The model's last hidden state as ONNX (exported once per model and length)."""
    path = workdir / f"{re.sub(r'[^A-Za-z0-9]+', '_', model.spec.describe())}-{seq}.onnx"
    if not path.exists():
        torch.onnx.export(
            _LastHidden(model),
            (torch.zeros(1, seq, dtype=torch.long),),
            str(path),
            dynamo=False,
            input_names=["ids"],
            output_names=["hidden"],
            dynamic_axes={"ids": {1: "seq"}},
        )
    return path


def _ort_session(model: torch.nn.Module, seq: int, threads: int, workdir: Path, int8: bool = False):
    import onnxruntime as ort

    path = _onnx_path(model, seq, workdir)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = path.with_name(path.stem + "-int8.onnx")
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


OPENVINO_PER_OP: dict[str, dict[str, float]] = {}  # "<model> seq <n>" -> ms per OpenVINO node type (fp32)


def _openvino_peers(
    model: torch.nn.Module, seq: int, threads: int, workdir: Path, ids: np.ndarray
) -> dict[str, tuple[Callable[[], np.ndarray], str]]:
    """OpenVINO on the same ONNX graph: fp32, its default precision on this CPU, and NNCF int8 (static shape)."""
    import nncf
    import openvino as ov

    core = ov.Core()
    base = core.read_model(str(_onnx_path(model, seq, workdir)))
    base.reshape({"ids": [1, seq]})
    common = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    calibration = nncf.Dataset(
        [{"ids": np.random.default_rng(i).integers(1000, 2000, (1, seq)).astype(np.int64)} for i in range(16)]
    )
    quantized = nncf.quantize(base.clone(), calibration, model_type=nncf.ModelType.TRANSFORMER, subset_size=16)
    peers = {}
    for label, graph, extra in (
        ("OpenVINO", base, {"INFERENCE_PRECISION_HINT": "f32"}),
        ("OpenVINO default", base, {}),
        ("OpenVINO int8 (NNCF)", quantized, {}),
    ):
        compiled = core.compile_model(graph, "CPU", {**common, **extra})
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        request = compiled.create_infer_request()
        feed = {"ids": ids.astype(np.int64)}

        def run(request=request, feed=feed) -> np.ndarray:
            request.infer(feed)
            return request.get_output_tensor(0).data

        peers[label] = (run, chosen if label != "OpenVINO int8 (NNCF)" else f"int8 + {chosen}")
        if label == "OpenVINO":
            for _ in range(3):  # the counters are of the last call: warm it first
                run()
            per_type: dict[str, float] = {}
            for info in request.profiling_info:
                per_type[info.node_type] = per_type.get(info.node_type, 0.0) + info.real_time.total_seconds() * 1e3
            OPENVINO_PER_OP[f"{model.spec.describe()} seq {seq}"] = per_type
    return peers


def _litert_peer(
    model: torch.nn.Module, seq: int, threads: int, workdir: Path, ids: np.ndarray
) -> Callable[[], np.ndarray]:
    """LiteRT (the TFLite runtime; its default XNNPACK delegate) on the model converted by litert-torch, static
    shape, fp32. Optional: `pip install litert-torch ai-edge-litert` (then `pip install "typing_extensions>=4.15"`:
    litert-torch pins an older one that selenium, used by the page tests, refuses)."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    path = workdir / f"{re.sub(r'[^A-Za-z0-9]+', '_', model.spec.describe())}-{seq}.tflite"
    if not path.exists():
        litert_torch.convert(_LastHidden(model).eval(), (torch.tensor(ids),)).export(str(path))
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    feed = {name: ids.astype(np.int32)}  # the converter narrows int64 inputs to int32

    def run(interpreter=interpreter) -> np.ndarray:  # the runner needs its interpreter alive
        return next(iter(runner(**feed).values()))

    return run


class _Layers(torch.nn.Module):
    """The encoder's layers alone, from the embeddings' output (for LiteRT int8, see below)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder.layers:
            x = layer(x, None)[0]
        return x


def _litert_int8_peer(
    model: torch.nn.Module, seq: int, threads: int, workdir: Path, ids: np.ndarray
) -> Callable[[], np.ndarray]:
    """LiteRT with dynamic-range int8 (litert-torch's PT2E quantizer: int8 weights per output channel, activations
    quantized at run time), on the encoder's layers from the embeddings' output: the converter quantizes the
    embedding lookup too, which the TFLite kernel refuses (zero point != 0), with or without a per-module
    exemption, so the lookup + LayerNorm (~1% of a call) stays outside its timing -- which favours LiteRT."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    token_ids = torch.tensor(ids)
    with torch.no_grad():
        x = model.embed(token_ids, torch.zeros_like(token_ids))
    path = workdir / f"{re.sub(r'[^A-Za-z0-9]+', '_', model.spec.describe())}-{seq}-layers-int8.tflite"
    if not path.exists():
        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
        graph = prepare_pt2e(torch.export.export(_Layers(model).eval(), (x,)).module(), quantizer)
        graph(x)
        graph = convert_pt2e(graph, fold_quantize=False)
        litert_torch.convert(graph, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    feed = {name: x.numpy()}

    def run(interpreter=interpreter) -> np.ndarray:  # the runner needs its interpreter alive
        return next(iter(runner(**feed).values()))

    return run


PEER_PRECISION = {
    "LiteRT int8 (layers only)": "int8 (dynamic)",
    "PyTorch bf16": "bf16",
    "ONNX Runtime int8": "int8 (dynamic)",
    "canao bf16": "bf16",
    "canao int8": "int8 (dynamic)",
}
CANAO_PRECISIONS = ("fp32", "bf16", "int8")


def bench_encoder(
    name: str, model: torch.nn.Module, seq: int, threads: int, runs: int, tune_s: float, workdir: Path
) -> list[Row]:
    spec = model.spec
    gflop = spec.flops(seq) / 1e9
    ids = np.random.default_rng(seq).integers(1000, 2000, (1, seq))
    x = torch.tensor(ids)
    peers: dict[str, Callable[[], object]] = {}
    diffs: dict[str, float] = {}
    with torch.inference_mode():
        want = model(x).last_hidden_state.numpy()

    def eager() -> object:
        with torch.inference_mode():
            return model(x)

    peers["PyTorch eager"], diffs["PyTorch eager"] = eager, 0.0
    for label, int8 in (("ONNX Runtime", False), ("ONNX Runtime int8", True)):
        try:
            session = _ort_session(model, seq, threads, workdir, int8=int8)
            feed = {"ids": ids.astype(np.int64)}
            diffs[label] = float(np.abs(session.run(None, feed)[0] - want).max())
            peers[label] = lambda session=session, feed=feed: session.run(None, feed)
        except Exception as err:  # a missing or failing peer is reported, not fatal
            print(f"{label} skipped for {name} seq {seq}: {err!r}")
    try:
        for label, (run, precision) in _openvino_peers(model, seq, threads, workdir, ids).items():
            diffs[label] = float(np.abs(run() - want).max())
            peers[label] = run
            PEER_PRECISION[label] = precision
            print(f"{label}: inference precision {precision}")
    except Exception as err:  # not installed (pip install -e ".[bench]") or failing: reported, not fatal
        print(f"OpenVINO skipped for {name} seq {seq}: {err!r}")
    try:
        run = _litert_peer(model, seq, threads, workdir, ids)
        diffs["LiteRT"], peers["LiteRT"] = float(np.abs(run() - want).max()), run
    except Exception as err:  # not installed (see _litert_peer) or failing: reported, not fatal
        print(f"LiteRT skipped for {name} seq {seq}: {err!r}")
    try:
        run = _litert_int8_peer(model, seq, threads, workdir, ids)
        label = "LiteRT int8 (layers only)"
        diffs[label], peers[label] = float(np.abs(run() - want).max()), run
    except Exception as err:  # not installed (see _litert_peer) or failing: reported, not fatal
        print(f"LiteRT int8 skipped for {name} seq {seq}: {err!r}")
    half = copy.deepcopy(model).to(torch.bfloat16)

    def eager_bf16() -> object:
        with torch.inference_mode():
            return half(x)

    diffs["PyTorch bf16"] = float(np.abs(eager_bf16().last_hidden_state.float().numpy() - want).max())
    peers["PyTorch bf16"] = eager_bf16
    for precision in CANAO_PRECISIONS:
        options = BuildOptions(threads=threads, tune_budget_s=tune_s, tune_seq_len=seq, precision=precision)
        compiled = build(lower_model(model), options).load()
        label = "canao" if precision == "fp32" else f"canao {precision}"
        diffs[label] = float(np.abs(compiled.run(ids)["last_hidden_state"] - want).max())
        peers[label] = lambda compiled=compiled: compiled.run(ids)
    stats = measure_interleaved_ms(peers, runs=runs)
    return [
        Row(name, f"seq {seq}", peer, stats[peer], gflop, diffs[peer], PEER_PRECISION.get(peer, "fp32"))
        for peer in peers
    ]


def _ct2_decode(
    model: torch.nn.Module, context: np.ndarray, threads: int, runs: int, workdir: Path
) -> Optional[tuple[TimingStats, float]]:
    """Per-token decode time of CTranslate2 on the same weights (None if it is not installed)."""
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        return None
    from canao.models import save_pretrained

    vocab_json = GPT2_TOKENIZER_DIR / "encoder.json"
    if not vocab_json.exists():
        print(f"CTranslate2 skipped: the GPT-2 vocabulary it converts with is not at {GPT2_TOKENIZER_DIR}")
        return None
    import json
    import shutil

    hf_dir, ct2_dir = workdir / "gpt2-hf", workdir / "gpt2-ct2"
    save_pretrained(model, hf_dir)
    shutil.copy(vocab_json, hf_dir / "vocab.json")
    shutil.copy(GPT2_TOKENIZER_DIR / "vocab.bpe", hf_dir / "merges.txt")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    TransformersConverter(str(hf_dir)).convert(str(ct2_dir), force=True)
    generator = ctranslate2.Generator(str(ct2_dir), device="cpu", intra_threads=threads, inter_threads=1)
    names = {i: t for t, i in json.loads(vocab_json.read_text()).items()}
    prompt = [[names[int(t)] for t in context]]

    def generate(n: int) -> float:
        start = time.perf_counter()
        generator.generate_batch(prompt, max_length=n, sampling_topk=1, include_prompt_in_result=False, min_length=n)
        return (time.perf_counter() - start) * 1e3

    for _ in range(2):
        generate(9)
    samples = np.array([(generate(17) - generate(1)) / 16 for _ in range(max(5, runs // 4))])
    q25, q50, q75, q90 = np.percentile(samples, [25, 50, 75, 90])
    return TimingStats(float(q50), float(q90), float(samples.min()), float(q75 - q25), len(samples)), float("nan")


class _DecodeStep(torch.nn.Module):
    """One decode step with the KV cache as plain tensors, for the export-based peers: ids (1, 1) and the layers'
    stacked past keys and values (L, 1, nh, S, hd) -> the step's logits (1, vocab) and the grown keys and values
    (L, 1, nh, S + 1, hd). The context length is fixed at export (static shapes, as LiteRT needs)."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(
        self, ids: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cache = KVCache([(past_k[i], past_v[i]) for i in range(past_k.shape[0])])
        out = self.decoder(ids, cache=cache)
        keys, values = zip(*out.cache.layers)
        return out.logits[:, -1], torch.stack(keys), torch.stack(values)


def _decoder_peers(
    model: torch.nn.Module, prompt: np.ndarray, token: int, threads: int, workdir: Path
) -> dict[str, tuple[Callable[[], np.ndarray], str]]:
    """OpenVINO (fp32, its default precision, NNCF int8 weight compression -- its usual mode for generative
    models) and LiteRT fp32 running the same decode step as canao, with the KV cache fed in and returned as
    tensors. A peer that is not installed or fails is reported and left out."""
    step = _DecodeStep(model).eval()
    with torch.no_grad():  # not inference mode: litert-torch's export cannot trace inference tensors
        layers = model(torch.tensor(prompt[None])).cache.layers
        past_k, past_v = (torch.stack([kv[i] for kv in layers]) for i in (0, 1))
    ids = torch.tensor([[token]])
    peers: dict[str, tuple[Callable[[], np.ndarray], str]] = {}
    try:
        import nncf
        import openvino as ov

        path = workdir / "gpt2-decode-step.onnx"
        torch.onnx.export(step, (ids, past_k, past_v), str(path), dynamo=False, input_names=["ids", "past_k", "past_v"])
        core = ov.Core()
        base = core.read_model(str(path))
        feed = {"ids": ids.numpy(), "past_k": past_k.numpy(), "past_v": past_v.numpy()}
        common = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        for label, graph, extra in (
            ("OpenVINO", base, {"INFERENCE_PRECISION_HINT": "f32"}),
            ("OpenVINO default", base, {}),
            ("OpenVINO int8 weights (NNCF)", nncf.compress_weights(base.clone()), {}),
        ):
            compiled = core.compile_model(graph, "CPU", {**common, **extra})
            request = compiled.create_infer_request()

            def run(request=request) -> np.ndarray:
                request.infer(feed, share_inputs=True)
                return request.get_output_tensor(0).data[0]

            chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            peers[label] = (run, chosen if "int8" not in label else f"int8 weights + {chosen}")
    except Exception as err:  # not installed (pip install -e ".[bench]") or failing: reported, not fatal
        print(f"OpenVINO skipped for the decoder: {err!r}")
    try:
        import litert_torch
        from ai_edge_litert.interpreter import Interpreter

        path = workdir / "gpt2-decode-step.tflite"
        litert_torch.convert(step, (ids, past_k, past_v)).export(str(path))
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        runner = interpreter.get_signature_runner()
        names = sorted(runner.get_input_details())  # args_0..2, in the order of forward's arguments
        tensors = (ids.numpy().astype(np.int32), past_k.numpy(), past_v.numpy())
        lite_feed = dict(zip(names, tensors))

        def run_litert(interpreter=interpreter) -> np.ndarray:  # the runner needs its interpreter alive
            return next(v for v in runner(**lite_feed).values() if v.ndim == 2)[0]

        peers["LiteRT"] = (run_litert, "fp32")
    except Exception as err:  # not installed (see _litert_peer) or failing: reported, not fatal
        print(f"LiteRT skipped for the decoder: {err!r}")
    return peers


def bench_decoder(threads: int, runs: int, tune_s: float, workdir: Path, context: int = 128) -> list[Row]:
    torch.manual_seed(0)
    model = build_model(GPT2_SMALL, "lm").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.2)  # keep random activations in a sane range over 12 layers
    ids = np.random.default_rng(7).integers(0, GPT2_SMALL.vocab_size, context)
    token = int(ids[-1])
    prompt, gflop = ids[:-1], (GPT2_SMALL.flops(1) + 2 * 2 * (context) * 768 * 12) / 1e9
    with torch.inference_mode():
        cache = model(torch.tensor(prompt[None])).cache
        step = torch.tensor([[token]])
        want = model(step, cache=cache).logits[0].numpy()

    def eager() -> object:
        with torch.inference_mode():
            return model(step, cache=cache)

    half = copy.deepcopy(model).to(torch.bfloat16)
    with torch.inference_mode():
        half_cache = half(torch.tensor(prompt[None])).cache

    def eager_bf16() -> object:
        with torch.inference_mode():
            return half(step, cache=half_cache)

    half_diff = float(np.abs(eager_bf16().logits[0].float().numpy() - want).max())
    sessions = {}
    for precision in CANAO_PRECISIONS:
        options = BuildOptions(threads=threads, tune_budget_s=tune_s, tune_seq_len=1, precision=precision)
        compiled = build(lower_model(model), options).load()
        sessions[precision] = compiled.new_session()
        sessions[precision].prefill(prompt)

    def decoder(precision: str) -> Callable[[], np.ndarray]:
        session = sessions[precision]

        def decode() -> np.ndarray:
            session.length = context - 1  # every timed step decodes at the same context length
            return session.decode_step(token)

        return decode

    diffs = {p: float(np.abs(decoder(p)() - want).max()) for p in sessions}
    peers = _decoder_peers(model, prompt, token, threads, workdir)
    for label, (run, precision) in peers.items():
        diffs[label] = float(np.abs(run() - want).max())
        print(f"{label} (decoder): inference precision {precision}")
    stats = measure_interleaved_ms(
        {
            "eager": eager,
            "eager bf16": eager_bf16,
            **{f"canao {p}": decoder(p) for p in CANAO_PRECISIONS},
            **{label: run for label, (run, _) in peers.items()},
        },
        runs=runs,
    )
    rows = [
        Row("GPT-2 small", f"decode @ ctx {context}", "PyTorch eager (KV cache)", stats["eager"], gflop, 0.0),
        Row(
            "GPT-2 small",
            f"decode @ ctx {context}",
            "PyTorch bf16 (KV cache)",
            stats["eager bf16"],
            gflop,
            half_diff,
            "bf16",
        ),
        Row("GPT-2 small", f"decode @ ctx {context}", "canao (KV cache)", stats["canao fp32"], gflop, diffs["fp32"]),
        Row(
            "GPT-2 small",
            f"decode @ ctx {context}",
            "canao bf16 (KV cache)",
            stats["canao bf16"],
            gflop,
            diffs["bf16"],
            "bf16",
        ),
        Row(
            "GPT-2 small",
            f"decode @ ctx {context}",
            "canao int8 (KV cache)",
            stats["canao int8"],
            gflop,
            diffs["int8"],
            "int8 (dynamic)",
        ),
    ]
    rows += [
        Row("GPT-2 small", f"decode @ ctx {context}", label, stats[label], gflop, diffs[label], precision)
        for label, (_, precision) in peers.items()
    ]
    try:
        ct2 = _ct2_decode(model, prompt, threads, runs, workdir)
    except Exception as err:
        print(f"CTranslate2 skipped: {err!r}")
        ct2 = None
    if ct2 is not None:
        rows.append(Row("GPT-2 small", f"decode @ ctx {context}", "CTranslate2", ct2[0], gflop, ct2[1]))
    return rows


def peak_kind(simd: str) -> str:
    """What the bf16 and int8 peaks measure: the tile products where the GEMMs run on AMX, else the dot products."""
    return "AMX tile product" if simd_level(simd).amx_tiles else "dot product"


def gemm_efficiency(simd: str, threads: int) -> tuple[dict[str, float], list[tuple[str, str, float, float]]]:
    """Measured peaks (fp32 FMA, bf16 and int8 dot products; on the `amx` level the tile products, which the
    bf16 and int8 GEMMs use there) and the tuned canao GEMMs' fraction of them."""
    lib = bench_library(simd)
    peaks = {
        p: max(
            lib.canao_bench_peak_gflops(threads, Precision(p).layout.c_code) for _ in range(3)
        )  # noise only lowers it
        for p in CANAO_PRECISIONS
    }
    out = []
    for precision in CANAO_PRECISIONS:
        for m, n, k in ((128, 768, 768), (128, 3072, 768)):
            result = measure_shape(lib, simd, m, n, k, threads, time.monotonic() + 60, precision)
            out.append((f"{n}x{k}x{m} (N x K x M)", precision, result["gflops"], result["gflops"] / peaks[precision]))
    return peaks, out


def to_markdown(rows: list[Row], peaks: dict[str, float], gemms: list, header: str, kind: str = "dot product") -> str:
    lines = [
        header,
        "",
        "Speed-up columns: the row's median time / canao's at that precision: above 1 means canao is faster. "
        "GFLOP/s counts the model's multiply-adds whatever the precision.",
        "",
        "| model | setting | runtime | precision | median ms | p90 ms | GFLOP/s | canao fp32 speed-up | "
        "canao bf16 speed-up | canao int8 speed-up | max abs diff vs PyTorch fp32 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in dict.fromkeys((r.model, r.setting) for r in rows):
        group = [r for r in rows if (r.model, r.setting) == key]
        ours = {
            next((p for p in ("bf16", "int8") if p in r.runtime), "fp32"): r
            for r in group
            if r.runtime.startswith("canao")
        }
        for r in group:
            speed = [
                f"{r.stats.median_ms / ours[p].stats.median_ms:.2f}x" if p in ours and r is not ours[p] else ""
                for p in CANAO_PRECISIONS
            ]
            lines.append(
                f"| {r.model} | {r.setting} | {r.runtime} | {r.precision} | {r.stats.median_ms:.2f} | "
                f"{r.stats.p90_ms:.2f} | {r.gflop / r.stats.median_ms * 1e3:.1f} | {' | '.join(speed)} | "
                f"{r.max_abs_diff:.1e} |"
            )
    lines += [
        "",
        "Measured peaks (all threads): "
        + ", ".join(
            f"{p} {'FMA' if p == 'fp32' else kind} {peaks[p]:.1f} G{'FL' if p != 'int8' else ''}OP/s"
            for p in CANAO_PRECISIONS
        ),
        "",
        "| canao GEMM | precision | G(FL)OP/s | fraction of that precision's peak |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {name} | {precision} | {g:.1f} | {100 * f:.0f}% |" for name, precision, g, f in gemms]
    for key, per_type in OPENVINO_PER_OP.items():
        total = sum(per_type.values()) or 1.0
        lines += [
            "",
            f"OpenVINO fp32 per node type (PERF_COUNT, one call), {key}; compare `canao bench ART --per-op`:",
            "",
            "| node type | ms | share |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {t} | {ms:.3f} | {100 * ms / total:.1f}% |"
            for t, ms in sorted(per_type.items(), key=lambda kv: -kv[1])
            if ms > 0
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tune-s", type=float, default=60.0, help="tuning budget per model, seconds")
    parser.add_argument("--write", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--quick", action="store_true", help="MiniLM seq 128 only")
    parser.add_argument("--only-minilm", action="store_true", help="MiniLM at 128 and 384 tokens only")
    parser.add_argument("--only-decoder", action="store_true", help="the GPT-2 small decode step only")
    parser.add_argument(
        "--wait-policy",
        choices=("spin-then-sleep", "passive", "active"),
        default="spin-then-sleep",
        help="how the OpenMP threads of canao and PyTorch (one shared libgomp) wait between parallel regions: "
        "libgomp's default (spin-then-sleep, as in every earlier table), passive (canao's default where it loads "
        "libgomp first) or active (spin forever: their idle threads then steal the peers' cores between rounds); "
        "see docs/wait-policy.md",
    )
    args = parser.parse_args()
    policy = {"passive": "PASSIVE", "active": "ACTIVE"}.get(args.wait_policy)
    if os.environ.get("OMP_WAIT_POLICY") != policy or "GOMP_SPINCOUNT" in os.environ:
        # libgomp reads the policy once, when it loads -- already done by `import torch` (canao's libraries then
        # share torch's libgomp.so.1) -- so the policy takes effect only in a fresh process
        os.environ.pop("GOMP_SPINCOUNT", None)
        os.environ.pop("OMP_WAIT_POLICY", None)
        if policy:
            os.environ["OMP_WAIT_POLICY"] = policy
        os.execv(sys.executable, [sys.executable, *sys.argv])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    machine, simd = describe_machine(), resolve_simd(None)
    import onnxruntime

    header = (
        f"Machine: {machine.cpu_model}, {machine.cores} cores, SIMD {simd} (flags: {' '.join(machine.simd_flags)}); "
        f"{args.threads} threads for every runtime; batch 1; OpenMP threads (canao, PyTorch) wait "
        f"{args.wait_policy}. torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, python {platform.python_version()}."
    )
    peaks, gemms = gemm_efficiency(simd, args.threads)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.only_decoder:
            teacher = load_teacher().model
            for seq in (128,) if args.quick else (128, 384):
                rows += bench_encoder(
                    "MiniLM-L6-H384 (teacher)", teacher, seq, args.threads, args.runs, args.tune_s, work
                )
        if args.only_decoder:
            rows += bench_decoder(args.threads, args.runs, args.tune_s, work)
        elif not args.quick and not args.only_minilm:
            torch.manual_seed(0)
            base = build_model(BERT_BASE).eval()
            for seq in (128, 384):
                rows += bench_encoder("BERT-base shape", base, seq, args.threads, args.runs, args.tune_s, work)
            rows += bench_decoder(args.threads, args.runs, args.tune_s, work)
    table = to_markdown(rows, peaks, gemms, header, peak_kind(simd))
    print(table)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(
            "# Compiler benchmark\n\nCommand: `.venv/bin/python benchmarks/compiler.py "
            f"--write {args.write}`\n\n" + table
        )


if __name__ == "__main__":
    main()
