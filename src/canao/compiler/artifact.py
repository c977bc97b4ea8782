"""The deployable artifact directory: write it atomically, verify it, load it with numpy + the shared library.

Layout (DESIGN.md)::

  artifact/
    arch.json  model.safetensors  tokenizer.json  task.json
    manifest.json                      sha256 + size of every file above, written last
    compiled/<device-fingerprint>/  ir.json  kernel.c  libmodel.so  weights.bin  tuning.json
                                    manifest.json      the build's own files, written last

model.safetensors keeps the unpacked weights (canao naming) so the artifact
can be compiled again for another device; compiled/<fp>/ holds the final
graph, the generated C, the library and the packed weight blob for one CPU,
and tuning.json records how it was built (BuildOptions, task, tile choices).

Integrity: a damaged shared library can crash the process on load, and a
damaged weight blob of the right size runs with wrong outputs, so every file
is checked against its manifest before anything is loaded. A damaged or
missing build, or one whose record disagrees with task.json (another task or
precision), is rebuilt from model.safetensors (itself verified); damage to
the top-level files is refused with a message naming the file. Loading never
imports torch.

Trust: everything in an artifact is data except a build's libmodel.so, which
is native code. A build is loaded as it is only when its manifest carries a
signature made with this machine's key (canao.compiler.trust: every build
canao compiles is signed); a build from elsewhere (unsigned, or signed with
another key) is compiled again here from model.safetensors, unless the caller
passes `trust=True` (`--trust-artifact`). A manifest entry that is not a plain
file name of the directory (`../x`, `a/b`) and a symlink anywhere among the
files read are refused, never followed.

Example::

    write_artifact(Path("art"), spec, weights, task="backbone", tokenizer=tok)
    art = load_artifact(Path("art"))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from canao.arch import ArchSpec
from canao.compiler.build import Build, BuildOptions, Progress, build
from canao.compiler.codegen.c import constants_from_blob
from canao.compiler.ir import Graph
from canao.compiler.layout import Precision
from canao.compiler.lower import lower_spec
from canao.compiler.runtime import CompiledModel, NativeLibrary, RuntimeLoadError
from canao.compiler.toolchain import cache_dir
from canao.compiler.trust import SIGNATURE, sign_manifest, signed_here
from canao.device import SIMD_LEVELS, fingerprint, resolve_simd
from canao.errors import CanaoError
from canao.storage import (
    ExistingDirectoryError,
    OutputPathError,
    prepare_target,
    replace_directory,
    share_file,
    temp_directory,
    write_json_atomically,
)

log = logging.getLogger(__name__)
ARTIFACT_VERSION = 1
MANIFEST = "manifest.json"
TOP_FILES = ("arch.json", "task.json", "model.safetensors", "tokenizer.json")
BUILD_FILES = ("ir.json", "kernel.c", "libmodel.so", "weights.bin", "tuning.json")


@dataclass(frozen=True)
class Artifact:
    path: Path
    model: CompiledModel
    tokenizer: Any  # tokenizers.Tokenizer or None
    task: dict[str, Any]


class BuildDamaged(RuntimeLoadError):
    """A compiled build is missing, altered or made for another task/precision: rebuild it."""


class BuildUntrusted(BuildDamaged):
    """A compiled build was not made on this machine (its manifest is unsigned or signed with another key):
    its library is not loaded; the build is compiled again from model.safetensors."""


# ----------------------------------------------------------------- manifests
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, names: list[str], *, signed: bool = False) -> None:
    """Record sha256 and size of `names` (those that exist) in directory/manifest.json; written last. With
    `signed`, the manifest is signed with this machine's key (a build canao compiled here)."""
    files = {
        n: {"sha256": file_digest(directory / n), "bytes": (directory / n).stat().st_size}
        for n in names
        if (directory / n).is_file()
    }
    manifest: dict[str, Any] = {"version": ARTIFACT_VERSION, "files": files}
    if signed:
        manifest[SIGNATURE] = sign_manifest(manifest)
    write_json_atomically(directory / MANIFEST, manifest)


def member(directory: Path, name: str, *, error: type = RuntimeLoadError) -> Path:
    """directory/name for a plain file name of the artifact, refusing what would leave it: a name with a path
    separator or `..`, and a symlink (it could point anywhere)."""
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise error(f"{directory / MANIFEST}: lists {name!r}, which is not a file of the directory; refused.")
    path = directory / name
    if path.is_symlink():
        raise error(f"{path}: is a symlink; an artifact's files must be plain files (copy the file in its place).")
    return path


def verify_manifest(directory: Path, names: Optional[list[str]] = None, *, error: type = RuntimeLoadError) -> dict:
    """Check the files of directory/manifest.json (or only `names`) and return the manifest; raise `error` naming
    the first missing or altered file."""
    if directory.is_symlink():
        raise error(f"{directory}: is a symlink; an artifact's directories must be plain directories.")
    member(directory, MANIFEST, error=error)
    manifest = _read_json(directory / MANIFEST, error=error)
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise error(f"{directory / MANIFEST}: malformed manifest (no `files`).")
    for name in files:
        member(directory, name, error=error)
    for name in files if names is None else [n for n in names if n in files]:
        path, want = directory / name, files[name]
        if not path.is_file():
            raise error(f"{path}: missing or not a file, but {directory / MANIFEST} lists it.")
        if path.stat().st_size != want.get("bytes") or file_digest(path) != want.get("sha256"):
            raise error(f"{path}: altered or corrupt (its checksum differs from {directory / MANIFEST}).")
    return manifest


# ------------------------------------------------------------------- writing
def build_dir_name(simd: str) -> str:
    """compiled/<name>: the device fingerprint, plus the SIMD level when forced below the host's."""
    host = resolve_simd(None)
    return fingerprint() if simd == host else f"{fingerprint()}@{simd}"


def _write_build(directory: Path, built: Build, task: str) -> None:
    final, options = built.graph, built.options
    (directory / "ir.json").write_text(final.to_json())
    (directory / "kernel.c").write_text(built.source)
    shutil.copy2(built.library, directory / "libmodel.so")
    built.weights().tofile(directory / "weights.bin")
    level = SIMD_LEVELS[options.simd]
    gemms = {
        n.output: {"mr": n.attr("mr", level.default_mr), "kc": n.attr("kc", 0)} for n in final.nodes if n.op == "gemm"
    }
    record = {
        "version": ARTIFACT_VERSION,
        "task": task,
        "options": options.to_dict(),
        "simd": options.simd,
        "precision": options.precision.value,
        "lanes": level.lanes,
        "gemm_nr": level.panel_width,
        "threads": options.threads,
        "tuned_seq_len": final.meta.get("tuned_seq_len"),
        "tuned_gemms": sum(1 for n in final.nodes if n.op == "gemm" and n.attr("mr", None) is not None),
        "gemms": gemms,
    }
    (directory / "tuning.json").write_text(json.dumps(record, indent=2))
    write_manifest(directory, list(BUILD_FILES), signed=True)


def compile_into(
    path: Path,
    spec: ArchSpec,
    weights: Mapping[str, np.ndarray],
    task: str,
    options: BuildOptions = BuildOptions(),
    progress: Optional[Progress] = None,
) -> tuple[Path, Build]:
    """Compile for this CPU into path/compiled/<fingerprint>/ (replacing an older build of it).

    GEMM variants come from the tuning database; with `options.tune_budget_s`
    > 0, shapes it lacks are measured on this device first."""
    options = options.resolved()
    built = build(lower_spec(spec, weights, task), options, progress)
    target = path / "compiled" / build_dir_name(options.simd)
    if target.parent.is_symlink():  # never build through a link out of the artifact; removing a link loses nothing
        target.parent.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_directory(target.parent, ".build-")
    try:
        _write_build(tmp, built, task)
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, built


def write_artifact(
    path: Path,
    spec: ArchSpec,
    weights: Mapping[str, np.ndarray],
    *,
    task: str,
    labels: Optional[dict[int, str]] = None,
    tokenizer: Any = None,
    options: BuildOptions = BuildOptions(),
    force: bool = False,
) -> Path:
    """Write a complete artifact atomically (temp dir, then rename into place).

    The precision of `options` is stored in task.json: every build of the
    artifact, on any CPU, keeps it. An existing directory is replaced only if
    it is a canao artifact holding nothing but canao's files; anything else is
    refused, or with `force` moved aside (never deleted)."""
    path = Path(path)
    options = options.resolved()  # checks the options before anything is written
    prepare_target(path, is_ours=_owned_artifact_files, force=force)
    tmp = temp_directory(path.parent, f".{path.name}.")
    try:
        (tmp / "arch.json").write_text(spec.to_json())
        (tmp / "task.json").write_text(
            json.dumps(
                {
                    "version": ARTIFACT_VERSION,
                    "task": task,
                    "precision": options.precision.value,
                    "labels": {str(k): v for k, v in (labels or {}).items()},
                },
                indent=2,
            )
        )
        _save_weights(tmp / "model.safetensors", weights)
        if tokenizer is not None:  # a tokenizers.Tokenizer
            tokenizer.save(str(tmp / "tokenizer.json"))
        write_manifest(tmp, list(TOP_FILES))
        compile_into(tmp, spec, weights, task, options)
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _save_weights(file: Path, weights: Mapping[str, np.ndarray]) -> None:
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    try:
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, str(file))
        share_file(file)
    except SafetensorError as err:  # a full disk, a quota: safetensors reports the OS error as its own
        raise OutputPathError(f"{file.parent.parent}: cannot write the artifact's weights ({err}).") from None


def _owned_artifact_files(directory: Path) -> Optional[list[Path]]:
    """The entries of `directory` that are not canao's (None if it is no artifact at all)."""
    if not (directory / "arch.json").is_file() or not (directory / "task.json").is_file():
        return None
    ours = {*TOP_FILES, MANIFEST, "compiled", "report.html", "report.json"}
    return [p for p in directory.iterdir() if p.name not in ours]


def retune_artifact(path: Path, options: BuildOptions, progress: Optional[Progress] = None) -> tuple[Path, Build]:
    """Re-compile an artifact's build for this CPU with GEMM variants tuned on it (within `options.tune_budget_s`);
    the precision stays the artifact's."""
    path = Path(path)
    spec, task = _read_top(path)
    options = replace(options, precision=_precision_of(path, task))
    return compile_into(path, spec, _read_model_weights(path), task["task"], options, progress)


# ------------------------------------------------------------------- loading
def _read_json(file: Path, *, error: type = RuntimeLoadError) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise error(f"{file}: missing; the artifact is incomplete (re-run `canao compile`).") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise error(f"{file}: corrupt or unreadable ({type(err).__name__}: {err}); re-run `canao compile`.") from err
    if not isinstance(data, dict):
        raise error(f"{file}: corrupt (expected a JSON object); re-run `canao compile`.")
    return data


def _read_model_weights(path: Path) -> dict[str, np.ndarray]:
    """The artifact's unpacked weights (model.safetensors), verified against the manifest, read with numpy."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if (path / MANIFEST).exists():
        verify_manifest(path, ["model.safetensors"])
    member(path, "model.safetensors")
    try:
        return load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError) as err:
        raise RuntimeLoadError(f"{path / 'model.safetensors'}: cannot be read ({err}).") from err


def _precision_of(path: Path, task: Mapping[str, Any]) -> Precision:
    """The artifact's matrix-product precision (artifacts written before the choice existed are fp32)."""
    try:
        return Precision.parse(task.get("precision", "fp32"))
    except CanaoError as err:
        raise RuntimeLoadError(f"{path / 'task.json'}: {err}") from err


def _read_top(path: Path) -> tuple[ArchSpec, dict[str, Any]]:
    """arch.json and task.json, verified against the artifact's manifest (older artifacts have none)."""
    if (path / MANIFEST).exists() or (path / MANIFEST).is_symlink():
        verify_manifest(path, ["arch.json", "task.json", "tokenizer.json"])
    for name in ("arch.json", "task.json", "tokenizer.json"):
        member(path, name)
    try:
        spec = ArchSpec.from_dict(_read_json(path / "arch.json"))
    except RuntimeLoadError:
        raise
    except (CanaoError, TypeError, KeyError, ValueError) as err:
        raise RuntimeLoadError(f"{path / 'arch.json'}: {err}") from err
    task = _read_json(path / "task.json")
    if not isinstance(task.get("task"), str):
        raise RuntimeLoadError(f"{path / 'task.json'}: no `task` field; re-run `canao compile`.")
    return spec, task


@dataclass(frozen=True)
class ArtifactSource:
    """What an artifact compiles from, verified: its spec, task record, precision and unpacked weights."""

    spec: ArchSpec
    task: dict[str, Any]
    precision: Precision
    weights: dict[str, np.ndarray]

    def lowered(self) -> Graph:
        return lower_spec(self.spec, self.weights, self.task["task"])


def read_artifact_source(path: Path | str) -> ArtifactSource:
    """The artifact's spec, task and weights (checked against its manifest), to compile it for another target."""
    path = Path(path)
    if not path.is_dir():
        raise RuntimeLoadError(f"{path}: artifact directory not found; create one with `canao compile`.")
    spec, task = _read_top(path)
    return ArtifactSource(spec, task, _precision_of(path, task), _read_model_weights(path))


def _load_build(
    build_path: Path, spec: ArchSpec, task: Mapping[str, Any], precision: Precision, threads: int, trust: bool
) -> CompiledModel:
    """Graph, weight blob and library of one build, verified and cross-checked; BuildDamaged if anything is off,
    BuildUntrusted if it was not built on this machine (and `trust` is off)."""
    if build_path.parent.is_symlink():
        raise BuildDamaged(f"{build_path.parent}: is a symlink; an artifact's directories must be plain directories.")
    if not build_path.is_dir() and not build_path.is_symlink():
        raise BuildDamaged(f"{build_path}: no build for this CPU.")
    manifest = verify_manifest(build_path, error=BuildDamaged)
    if set(BUILD_FILES) - set(manifest["files"]):
        raise BuildDamaged(f"{build_path / MANIFEST}: does not list every file of a build.")
    if not trust and not signed_here(manifest):
        raise BuildUntrusted(
            f"{build_path}: was not built on this machine (its manifest is not signed with this machine's key), "
            "so its library is not loaded (pass --trust-artifact to load it as it is)"
        )
    record = _read_json(build_path / "tuning.json", error=BuildDamaged)
    if record.get("task") != task["task"] or record.get("precision") != precision.value:
        raise BuildDamaged(
            f"{build_path}: built for task {record.get('task')!r} in {record.get('precision')!r}, "
            f"but task.json asks for {task['task']!r} in {precision.value!r}."
        )
    try:
        text = (build_path / "ir.json").read_text(encoding="utf-8")
        weights = np.fromfile(build_path / "weights.bin", dtype=np.float32)
        skeleton = Graph.from_json(text)
        names = json.loads(text)["constants"]
        graph = dataclasses.replace(skeleton, constants=constants_from_blob(names, skeleton.types, weights))
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:  # JSONDecodeError, IRError: ValueErrors
        raise BuildDamaged(f"{build_path}: ir.json and weights.bin do not fit together ({err}).") from err
    library = NativeLibrary.load(_private_copy(build_path / "libmodel.so", manifest["files"]["libmodel.so"]["sha256"]))
    model = CompiledModel(graph, weights, library, threads=threads, simd=str(record.get("simd")))
    if model.spec != spec:
        raise BuildDamaged(f"{build_path}: compiled for another architecture than arch.json.")
    return model


def _private_copy(library: Path, sha256: str) -> Path:
    """The verified library, copied once into the kernel cache under its checksum, for dlopen.

    A process keeps a loaded library mapped; if it mapped the artifact's own
    file, anyone rewriting that file in place (a rebuild, a copy, a damaged
    disk) would crash it with SIGBUS. The cached copy is never written again."""
    target = cache_dir() / f"libcanao-artifact-{sha256[:32]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".lib-", suffix=".so")
        os.close(fd)
        shutil.copyfile(library, tmp)
        if file_digest(Path(tmp)) != sha256:  # changed between the check and the copy
            os.unlink(tmp)
            raise BuildDamaged(f"{library}: changed while it was being loaded.")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return target


def load_artifact(path: Path | str, *, threads: int = 2, simd: Optional[str] = None, trust: bool = False) -> Artifact:
    """Load an artifact for this CPU, compiling it here first if its build for this CPU is missing, damaged or
    (unless `trust`) was not built on this machine."""
    path = Path(path)
    if not path.is_dir():
        raise RuntimeLoadError(f"{path}: artifact directory not found; create one with `canao compile`.")
    spec, task = _read_top(path)
    precision = _precision_of(path, task)
    options = BuildOptions(simd=simd or "auto", precision=precision, threads=threads).resolved()
    build_path = path / "compiled" / build_dir_name(options.simd)
    try:
        model = _load_build(build_path, spec, task, precision, threads, trust)
    except BuildDamaged as err:
        log.warning("%s; compiling it again from %s.", err, path / "model.safetensors")
        _rebuild(path, spec, task, options)
        model = _load_build(build_path, spec, task, precision, threads, trust)
    return Artifact(path, model, _load_tokenizer(path), task)


def _rebuild(path: Path, spec: ArchSpec, task: Mapping[str, Any], options: BuildOptions) -> None:
    try:
        compile_into(path, spec, _read_model_weights(path), task["task"], options)
    except OSError as err:  # a read-only or full artifact directory
        raise RuntimeLoadError(
            f"{path}: its build for this CPU must be compiled again, but it cannot be written there "
            f"({err.strerror or err}); copy the artifact somewhere writable and load the copy."
        ) from None


def _load_tokenizer(path: Path) -> Any:
    file = path / "tokenizer.json"
    if not file.exists():
        return None
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as err:  # tokenizers raises plain Exceptions for unreadable files
        raise RuntimeLoadError(f"{file}: cannot be read as a tokenizer ({err}); re-run `canao compile`.") from err
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


__all__ = [
    "Artifact",
    "ArtifactSource",
    "BuildDamaged",
    "BuildUntrusted",
    "ExistingDirectoryError",
    "build_dir_name",
    "compile_into",
    "load_artifact",
    "member",
    "read_artifact_source",
    "retune_artifact",
    "verify_manifest",
    "write_artifact",
    "write_manifest",
]
