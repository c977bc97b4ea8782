"""Teacher and student timed side by side in one run: PyTorch eager, ONNX Runtime (when installed) and canao in
each compiled precision, in alternating rounds (latency/timing.py), on one input of the task's length.

On another device (--device with a template) only canao runs there: each model is compiled for the device and
timed through its executor; PyTorch and ONNX Runtime are host-only peers and are left out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

ORT_MISSING = "onnxruntime is not installed (pip install '.[bench]')"


def _first_tensor(out: Any) -> Any:
    """The first tensor of a model's output (logits, start logits or hidden states): enough to time it."""
    for name in ("logits", "last_hidden_state"):
        if hasattr(out, name):
            return getattr(out, name)
    return out[0] if isinstance(out, (tuple, list)) else out


def _ort_runner(model: Any, ids: np.ndarray, threads: int, workdir: Path, name: str) -> Callable[[], object]:
    """The model exported to ONNX and run by ONNX Runtime (all graph optimisations, `threads` intra-op)."""
    import onnxruntime as ort
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _first_tensor(self.inner(x))

    path = workdir / f"{name}.onnx"
    torch.onnx.export(FirstOutput(model), (torch.from_numpy(ids),), str(path), dynamo=False, input_names=["ids"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"ids": ids})


def measure_side_by_side(state: Any, teacher_dir: Path, artifacts: dict[str, str]) -> dict[str, Any]:
    """Latencies (median ms) of teacher and student per runtime, and the predictor's figures for both."""
    from canao.arch import ArchSpec
    from canao.latency.predictor import LatencyPredictor
    from canao.latency.profile import DeviceProfile

    c = state.config
    teacher_spec = ArchSpec.from_dict(state.outputs["teacher"]["spec"])
    student_spec = ArchSpec.from_dict(state.outputs["search"]["chosen"]["spec"])
    predicted: dict[str, dict[str, float]] = {"teacher": {}, "student": {}}
    for precision, path in state.outputs["profile"]["profiles"].items():
        predictor = LatencyPredictor(DeviceProfile.load(Path(path)))
        predicted["teacher"][precision] = predictor.predict_ms(teacher_spec, c.seq_len)
        predicted["student"][precision] = predictor.predict_ms(student_spec, c.seq_len)
    if c.device != "local":
        return {**_on_device(state, teacher_spec, student_spec, artifacts), "predicted": predicted}
    return {**_local(state, teacher_dir, artifacts), "predicted": predicted}


def _on_device(state: Any, teacher: Any, student: Any, artifacts: dict[str, str]) -> dict[str, Any]:
    from canao.latency.profile import measure_model

    c, executor = state.config, state.executor()
    reps = c.effort.timing_runs
    canao: dict[str, dict[str, float]] = {"teacher": {}, "student": {}}
    for precision in artifacts:
        for role, spec in (("teacher", teacher), ("student", student)):
            timing = measure_model(spec, executor, c.seq_len, threads=c.threads, reps=reps, precision=precision)
            canao[role][precision] = timing.median_ms
    return {
        "canao": canao,
        "pytorch": {"unavailable": f"host-only peer; the models ran on {executor.description}"},
        "onnxruntime": {"unavailable": "host-only peer"},
        "device": executor.description,
    }


def _local(state: Any, teacher_dir: Path, artifacts: dict[str, str]) -> dict[str, Any]:
    import torch

    from canao.compiler.artifact import load_artifact
    from canao.compiler.build import BuildOptions, build
    from canao.compiler.layout import Precision
    from canao.compiler.lower import lower_model
    from canao.device import describe_machine
    from canao.latency.timing import measure_interleaved_ms
    from canao.models.hf import load_pretrained

    c = state.config
    torch.set_num_threads(c.threads)
    teacher = load_pretrained(teacher_dir).model.eval()
    student_dir = Path(state.outputs["distill"]["model"])
    student = load_pretrained(student_dir).model.eval()
    ids = np.random.default_rng(0).integers(1000, 20000, (1, c.seq_len)).astype(np.int64)
    x = torch.from_numpy(ids)
    fns: dict[str, Callable[[], object]] = {}

    def eager(model: Any) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(x)

        return run

    def compiled(model: Any) -> Callable[[], object]:
        return lambda: model.run(ids)

    fns["pytorch/teacher"], fns["pytorch/student"] = eager(teacher), eager(student)
    for precision, path in artifacts.items():
        fns[f"canao/student/{precision}"] = compiled(load_artifact(path, threads=c.threads).model)
        options = BuildOptions(precision=Precision.parse(precision), threads=c.threads)
        fns[f"canao/teacher/{precision}"] = compiled(build(lower_model(teacher), options).load())
    ort_note = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for role, model in (("teacher", teacher), ("student", student)):
                fns[f"onnxruntime/{role}"] = _ort_runner(model, ids, c.threads, Path(tmp), role)
        except ImportError:
            ort_note = ORT_MISSING
        except Exception as err:  # the export is a peer's, not ours: record why it is missing, go on
            ort_note = f"ONNX export or session failed: {type(err).__name__}: {err}"
        stats = measure_interleaved_ms(fns, runs=c.effort.timing_runs)
    result: dict[str, Any] = {"canao": {"teacher": {}, "student": {}}, "pytorch": {}, "onnxruntime": {}}
    for name, timing in stats.items():
        runtime, role, *variant = name.split("/")
        if variant:
            result[runtime][role][variant[0]] = timing.median_ms
        else:
            result[runtime][role] = timing.median_ms
    if ort_note:
        result["onnxruntime"] = {"unavailable": ort_note}
    result["device"] = f"local {describe_machine().cpu_model}"
    result["runs"] = c.effort.timing_runs
    return result
