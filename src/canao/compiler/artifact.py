"""The deployable artifact directory: write it atomically, load it with numpy + the shared library.

Layout (DESIGN.md)::

  artifact/
    arch.json  model.safetensors  tokenizer.json  task.json
    compiled/<device-fingerprint>/  ir.json  kernel.c  libmodel.so  weights.bin  tuning.json

model.safetensors keeps the unpacked weights (canao naming) so the artifact
can be compiled again for another device; compiled/<fp>/ holds the final
graph, the generated C, the library and the packed weight blob for one CPU.
Loading never imports torch; a missing build for this CPU is compiled from
model.safetensors on the spot.

Example::

    write_artifact(Path("art"), spec, weights, task="backbone", tokenizer=tok)
    model, tokenizer = load_artifact(Path("art"))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from canao.arch import ArchSpec
from canao.compiler.codegen.c import constants_from_blob, generate_c, weight_blob
from canao.compiler.ir import Graph
from canao.compiler.lower import lower_spec
from canao.compiler.passes.pack_weights import PRECISIONS, check_precision
from canao.compiler.runtime import CompiledModel, NativeLibrary, RuntimeLoadError, optimize
from canao.compiler.toolchain import SIMD_LANES, build_shared_library, compile_flags, panel_width_for, resolve_simd
from canao.errors import CanaoError
from canao.latency.device import fingerprint
from canao.storage import replace_directory

log = logging.getLogger(__name__)
ARTIFACT_VERSION = 1


@dataclass(frozen=True)
class Artifact:
    path: Path
    model: CompiledModel
    tokenizer: Any  # tokenizers.Tokenizer or None
    task: dict[str, Any]


def build_dir_name(simd: str) -> str:
    """compiled/<name>: the device fingerprint, plus the SIMD level when forced below the host's."""
    host = resolve_simd(None)
    return fingerprint() if simd == host else f"{fingerprint()}@{simd}"


def _write_build(directory: Path, final: Graph, source: str, library: Path, simd: str, threads: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ir.json").write_text(final.to_json())
    (directory / "kernel.c").write_text(source)
    shutil.copy2(library, directory / "libmodel.so")
    weight_blob(final).tofile(directory / "weights.bin")
    gemms = {n.output: {"mr": n.attr("mr", 6), "kc": n.attr("kc", 0)} for n in final.nodes if n.op == "gemm"}
    tuning = {"version": ARTIFACT_VERSION, "simd": simd, "lanes": SIMD_LANES[simd], "gemm_nr": panel_width_for(simd),
              "precision": final.meta.get("matmul_precision", "fp32"),
              "threads": threads, "tuned_seq_len": final.meta.get("tuned_seq_len"),
              "tuned_gemms": sum(1 for n in final.nodes if n.op == "gemm" and n.attr("mr", None) is not None),
              "gemms": gemms, "flags": list(compile_flags(simd))}
    (directory / "tuning.json").write_text(json.dumps(tuning, indent=2))


def compile_into(path: Path, spec: ArchSpec, weights: Mapping[str, np.ndarray], task: str,
                 simd: Optional[str] = None, *, threads: int = 2, tune_budget_s: float = 0.0,
                 tune_seq_len: int = 128, progress: Optional[Callable[[int, int], None]] = None,
                 precision: str = "fp32") -> Path:
    """Compile for this CPU into path/compiled/<fingerprint>/ (replacing an older build).

    GEMM variants come from the tuning database; with `tune_budget_s` > 0,
    shapes it lacks are measured on this device first. `precision` is the
    artifact's matrix-product precision (task.json), kept by every rebuild."""
    simd = resolve_simd(simd)
    final = optimize(lower_spec(spec, weights, task), simd=simd, threads=threads, tune_budget_s=tune_budget_s,
                     tune_seq_len=tune_seq_len, progress=progress, precision=precision)
    source = generate_c(final)
    library = build_shared_library(source, simd=simd)
    target = path / "compiled" / build_dir_name(simd)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _write_build(tmp, final, source, library, simd, threads)
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_artifact(path: Path, spec: ArchSpec, weights: Mapping[str, np.ndarray], *, task: str,
                   labels: Optional[dict[int, str]] = None, tokenizer: Any = None,
                   simd: Optional[str] = None, tune_budget_s: float = 0.0, precision: str = "fp32") -> Path:
    """Write a complete artifact atomically (temp dir, then rename into place).

    `precision` ("bf16" or "int8"; see runtime.optimize) is stored in
    task.json: every build of the artifact, on any CPU, keeps it."""
    check_precision(precision)  # before anything is written
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; an artifact is meant to be shared
    try:
        (tmp / "arch.json").write_text(spec.to_json())
        (tmp / "task.json").write_text(json.dumps({"version": ARTIFACT_VERSION, "task": task, "precision": precision,
                                                   "labels": {str(k): v for k, v in (labels or {}).items()}}, indent=2))
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, str(tmp / "model.safetensors"))
        if tokenizer is not None:  # a tokenizers.Tokenizer
            tokenizer.save(str(tmp / "tokenizer.json"))
        compile_into(tmp, spec, weights, task, simd, tune_budget_s=tune_budget_s, precision=precision)
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def retune_artifact(path: Path, *, budget_s: float, seq_len: int = 128, threads: int = 2,
                    simd: Optional[str] = None, progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Re-compile an artifact's build for this CPU with GEMM variants tuned on it (within `budget_s`)."""
    path = Path(path)
    spec = ArchSpec.from_dict(_read_json(path / "arch.json"))
    task = _read_json(path / "task.json")
    weights = _read_model_weights(path)
    return compile_into(path, spec, weights, task["task"], simd, threads=threads, tune_budget_s=budget_s,
                        tune_seq_len=seq_len, progress=progress, precision=_precision_of(task))


def _read_model_weights(path: Path) -> dict[str, np.ndarray]:
    """The artifact's unpacked weights (model.safetensors), read with numpy."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path / "model.safetensors"))
    except (SafetensorError, FileNotFoundError, OSError) as err:
        raise RuntimeLoadError(f"{path / 'model.safetensors'}: cannot be read ({err}).") from err


def _precision_of(task: Mapping[str, Any]) -> str:
    """The artifact's matrix-product precision (artifacts written before the choice existed are fp32)."""
    precision = task.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise RuntimeLoadError(f"task.json asks for precision {precision!r}; this canao knows {PRECISIONS}.")
    return str(precision)


def _read_json(file: Path) -> dict[str, Any]:
    if not file.exists():
        raise RuntimeLoadError(f"{file}: missing; the artifact is incomplete (re-run `canao compile`).")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise RuntimeLoadError(f"{file}: corrupt JSON ({err}); re-run `canao compile`.") from err


def _load_build(build: Path, threads: int) -> CompiledModel:
    """Graph, weight blob and library of one build, cross-checked against each other."""
    for name in ("ir.json", "libmodel.so", "weights.bin"):
        if not (build / name).exists():
            raise RuntimeLoadError(f"{build / name}: missing; the build is incomplete (re-run `canao compile`).")
    text = (build / "ir.json").read_text()
    weights = np.fromfile(build / "weights.bin", dtype=np.float32)
    try:
        skeleton = Graph.from_json(text)
        names = json.loads(text)["constants"]
        graph = dataclasses.replace(skeleton, constants=constants_from_blob(names, skeleton.types, weights))
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and IRError are ValueErrors
        raise RuntimeLoadError(f"{build}: ir.json and weights.bin do not fit together ({err}); re-run `canao compile`.") from err
    return CompiledModel(graph, weights, NativeLibrary.load(build / "libmodel.so"), threads=threads)


def load_artifact(path: Path | str, *, threads: int = 2, simd: Optional[str] = None) -> Artifact:
    """Load an artifact for this CPU, compiling it here first if it has no build for this CPU."""
    path = Path(path)
    if not path.is_dir():
        raise RuntimeLoadError(f"{path}: artifact directory not found; create one with `canao compile`.")
    try:
        spec = ArchSpec.from_dict(_read_json(path / "arch.json"))
    except CanaoError as err:
        raise RuntimeLoadError(f"{path / 'arch.json'}: {err}") from err
    task = _read_json(path / "task.json")
    simd = resolve_simd(simd)
    build = path / "compiled" / build_dir_name(simd)
    if not build.exists():
        log.warning("%s has no build for this CPU (%s); compiling it now.", path, build.name)
        compile_into(path, spec, _read_model_weights(path), task["task"], simd, precision=_precision_of(task))
    model = _load_build(build, threads)
    if model.spec != spec:
        raise RuntimeLoadError(f"{build}: compiled for another architecture than {path / 'arch.json'}; recompile.")
    tokenizer = None
    if (path / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
    return Artifact(path, model, tokenizer, task)
