"""Server benchmark: QA latency at 384 tokens (HTTP and in-process, next to ONNX Runtime and PyTorch), a load
test, schema fuzzing and bad-body checks, against `canao serve` run as a user runs it.

  latency   QA p50/p90 end to end for one 384-token window: in-process (tokenise + model + decode) with the
            compiled model, ONNX Runtime and PyTorch plugged into the same QA code; and over HTTP (POST /v1/qa
            to an idle server, request to answer)
  load      N concurrent asyncio clients for T seconds mixing QA and generation (half streamed) against
            `canao serve` (1 instance per model, 2 threads, --max-queue 16): status counts (zero 5xx),
            p50/p99 per route, throughput, 429s (counted, not errors), the largest in-flight count seen in
            /metrics against the bound
  fuzz      schemathesis over every operation of /openapi.json (valid and invalid bodies): no 5xx and every
            response conforming; then oversized and malformed bodies

The QA model is the bundled one when canao ships it, else the default teacher (MiniLM-L6-H384) with a
seeded random QA head: the same shapes, so the same latency. Stop training runs first (SIGSTOP/SIGCONT).

    .venv/bin/python benchmarks/server.py [--clients 50 --seconds 60 --fuzz-examples 170] [--out docs/server.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.apps.server: start_serve, fuzz

CONTEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
    "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
    "their leader Rollo, agreed to swear fealty to King Charles III of West Francia. "
)
QUESTION = "Who was the leader of the Norse raiders?"


def qa_artifact(work: Path) -> Path:
    """The bundled QA model compiled for this CPU, or the MiniLM teacher with a random QA head (same shapes)."""
    import torch

    from canao.apps.bundled import bundled_checkpoint
    from canao.compiler.build import BuildOptions
    from canao.compiler.checkpoint import compile_checkpoint

    out = work / "qa"
    if not (out / "manifest.json").exists():
        torch.manual_seed(0)
        try:
            checkpoint = bundled_checkpoint("qa")
        except Exception:
            checkpoint = None
        compile_checkpoint(
            checkpoint, out, BuildOptions(threads=2, tune_budget_s=60, tune_seq_len=384), task="qa", force=True
        )
    return out


def window_context(art: Any, tokens: int = 384) -> str:
    """A context that, with QUESTION, fills one window of `tokens` exactly (no second window)."""
    text = CONTEXT * 40
    enc = art.tokenizer.encode(QUESTION, text)
    room = tokens - (len(art.tokenizer.encode(QUESTION).ids) + 1)  # [CLS] q [SEP] context [SEP]
    context_offsets = [o for o, s in zip(enc.offsets, enc.sequence_ids) if s == 1]
    return text[: context_offsets[room - 1][1]]


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


class _Runner:
    """Duck-types CompiledModel.run for the QA app, so every backend runs the same tokenise/decode code."""

    def __init__(self, spec: Any, fn: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        self.spec, self.task, self.fn = spec, "qa", fn

    def run(self, input_ids: Any, token_type_ids: Any = None, attention_mask: Any = None) -> dict[str, np.ndarray]:
        start, end = self.fn(np.asarray(input_ids)[None], np.asarray(token_type_ids)[None])
        return {"start_logits": start, "end_logits": end}


def bench_latency(art: Any, url: str, runs: int, work: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from canao.apps.qa import answer_questions
    from canao.report.bench import torch_model_of

    context = window_context(art)
    model, _ = torch_model_of(art)
    torch.set_num_threads(2)

    def torch_fn(ids: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            s, e = model(torch.from_numpy(ids), None, torch.from_numpy(types))
        return s.numpy(), e.numpy()

    onnx_path = work / "qa.onnx"
    if not onnx_path.exists():
        torch.onnx.export(
            model,
            (torch.zeros(1, 384, dtype=torch.long), None, torch.zeros(1, 384, dtype=torch.long)),
            str(onnx_path),
            dynamo=False,
            input_names=["ids", "types"],
            output_names=["start", "end"],
            dynamic_axes={"ids": {1: "seq"}, "types": {1: "seq"}},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def ort_fn(ids: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, e = session.run(None, {"ids": ids.astype(np.int64), "types": types.astype(np.int64)})
        return s, e

    backends = {
        "canao (compiled)": art,
        "ONNX Runtime": dataclasses.replace(art, model=_Runner(art.model.spec, ort_fn)),
        "PyTorch eager": dataclasses.replace(art, model=_Runner(art.model.spec, torch_fn)),
    }
    answers = {name: answer_questions(b, [QUESTION], context).answers[0][0].text for name, b in backends.items()}
    times: dict[str, list[float]] = {name: [] for name in backends}
    http: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        body = {"question": QUESTION, "context": context}
        for _ in range(3):
            client.post("/v1/qa", json=body)
        for _ in range(runs):  # alternating rounds: drift hits every backend alike
            for name, b in backends.items():
                start = time.perf_counter()
                answer_questions(b, [QUESTION], context)
                times[name].append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            response = client.post("/v1/qa", json=body)
            http.append((time.perf_counter() - start) * 1e3)
            assert response.status_code == 200, response.text
    windows = answer_questions(art, [QUESTION], context).timings.windows
    return {
        "tokens": 384,
        "windows": windows,
        "answers": answers,
        "in_process": {name: _percentiles(t) for name, t in times.items()},
        "http canao": _percentiles(http),
    }


async def _client(url: str, until: float, stats: dict[str, list], rng: random.Random) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            kind = rng.choice(("qa", "qa", "generate", "generate-stream"))
            start = time.perf_counter()
            try:
                if kind == "qa":
                    r = await client.post("/v1/qa", json={"question": QUESTION, "context": CONTEXT * 3})
                    status = r.status_code
                elif kind == "generate":
                    r = await client.post("/v1/generate", json={"prompt": "ROMEO:", "max_new_tokens": 32})
                    status = r.status_code
                else:
                    body = {"prompt": "JULIET:", "max_new_tokens": 32, "stream": True, "temperature": 0.8}
                    async with client.stream("POST", "/v1/generate", json=body) as r:
                        async for _ in r.aiter_lines():
                            pass
                    status = r.status_code
            except httpx.TransportError as err:
                stats["errors"].append(repr(err))
                continue
            stats[kind].append((status, (time.perf_counter() - start) * 1e3))
            if status == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))


async def _watch_in_flight(url: str, until: float, seen: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < until:
            text = (await client.get("/metrics")).text
            seen.extend(float(line.split()[-1]) for line in text.splitlines() if line.startswith("canao_in_flight{"))
            await asyncio.sleep(0.2)


async def _load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    stats: dict[str, list] = {"qa": [], "generate": [], "generate-stream": [], "errors": []}
    until = time.monotonic() + seconds
    seen: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(_client(url, until, stats, random.Random(i)) for i in range(clients)), _watch_in_flight(url, until, seen)
    )
    wall = time.perf_counter() - start
    out: dict[str, Any] = {"clients": clients, "seconds": round(wall, 1), "transport_errors": len(stats["errors"])}
    for kind in ("qa", "generate", "generate-stream"):
        codes: dict[str, int] = {}
        for status, _ in stats[kind]:
            codes[str(status)] = codes.get(str(status), 0) + 1
        ok = [ms for status, ms in stats[kind] if status == 200]
        out[kind] = {
            "statuses": codes,
            "ok_per_s": round(len(ok) / wall, 2),
            **({"p50_ms": float(np.percentile(ok, 50)), "p99_ms": float(np.percentile(ok, 99))} if ok else {}),
        }
    out["five_xx"] = sum(
        n for k in ("qa", "generate", "generate-stream") for c, n in out[k]["statuses"].items() if int(c) >= 500
    )
    out["max_in_flight_seen"] = max(seen, default=0)
    return out


def bad_bodies(url: str) -> dict[str, int]:
    with httpx.Client(base_url=url, timeout=30) as c:
        return {
            "2 MiB body": c.post(
                "/v1/qa", content=b"x" * (2 << 20), headers={"content-type": "application/json"}
            ).status_code,
            "malformed JSON": c.post(
                "/v1/qa", content=b'{"question": ', headers={"content-type": "application/json"}
            ).status_code,
            "wrong type": c.post("/v1/generate", json={"prompt": 5}).status_code,
            "unknown field": c.post("/v1/generate", json={"prompt": "x", "tempreature": 1}).status_code,
            "unknown route": c.post("/v1/nothing", json={}).status_code,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--fuzz-examples", type=int, default=170)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "canao-bench-server")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here too")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)

    from canao.apps.bundled import bundled_artifact
    from canao.compiler.artifact import load_artifact
    from canao.device import describe_machine

    qa_path = qa_artifact(args.work)
    lm = bundled_artifact("lm")
    from tests.apps.server.conftest import start_serve

    server, url = start_serve([f"qa={qa_path}", f"lm={lm.path}"])
    try:
        machine = describe_machine()
        results: dict[str, Any] = {"machine": f"{machine.cpu_model} ({machine.simd_level}), 2 threads"}
        results["latency"] = bench_latency(load_artifact(qa_path), url, args.latency_runs, args.work)
        print(json.dumps(results["latency"], indent=2), flush=True)
        results["load"] = asyncio.run(_load(url, args.clients, args.seconds))
        print(json.dumps(results["load"], indent=2), flush=True)
        from tests.apps.server.test_schema_fuzz import fuzz

        counts = fuzz(url, args.fuzz_examples)
        results["fuzz"] = {"cases": sum(counts.values()), "per_operation": counts, "failures": 0}
        results["bad_bodies"] = bad_bodies(url)
        print(json.dumps({k: results[k] for k in ("fuzz", "bad_bodies")}, indent=2), flush=True)
        results["metrics_after"] = [
            line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith("canao_requests_total")
        ]
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


if __name__ == "__main__":
    main()
