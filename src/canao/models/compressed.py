"""Checkpoints with compressed weights: how canao ships a real model inside its wheel under a size limit.

A float32 MiniLM-size checkpoint is ~90 MB, too much for a wheel. `compress_checkpoint` rewrites a
checkpoint directory in one of two forms, both read back by `canao.models.hf.read_weights`, so every
loader (fine-tuning, evaluation, compilation, the apps) takes a compressed checkpoint as it is:

- ``bf16``: the standard ``model.safetensors`` with bfloat16 tensors (any Hugging Face tool reads it);
  half the size, a relative error of at most 2^-9 per weight.
- ``int8``: ``model.int8.safetensors``. Every float matrix of at least ``MIN_QUANTIZED`` entries is stored
  as int8 with one float32 scale per row, symmetric: ``w[r, :] ~= q[r, :] * scale[r]`` with
  ``scale[r] = max|w[r, :]| / 127``, so each output unit (each token's embedding row) keeps its error
  relative to its own weights (at most half a step, 0.4% of the row's largest weight). Vectors (biases,
  LayerNorm) stay float32. A quarter of the size; what it costs in accuracy is measured per model and
  written in its model card (benchmarks/accuracy.py, stage ``bundle``).

The file carries ``canao_compression`` in its safetensors metadata, and a quantized tensor ``name`` has its
scales beside it as ``name.int8_scale``; anything else is refused with the reason.

Example::

    compress_checkpoint(Path("runs/student/model"), Path("squad-qa-int8"), "int8")
    load_pretrained("squad-qa-int8")  # float32 weights, dequantized on load
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from canao.errors import CheckpointError
from canao.models.tokenizer import TOKENIZER_FILES
from canao.storage import prepare_target, replace_directory, share_file, temp_directory

INT8_FILE = "model.int8.safetensors"
INT8_SCHEME = "int8-rowwise-v1"
SCALE_SUFFIX = ".int8_scale"
MIN_QUANTIZED = 4096  # smaller matrices (a classifier head) are not worth a scale vector's bookkeeping
SCHEMES = ("int8", "bf16")
# files of a checkpoint directory that are copied unchanged (weights are rewritten, nothing else is kept)
CARRIED_FILES = ("config.json", *TOKENIZER_FILES, "README.md", "metrics.json", "train_config.json")


@dataclass(frozen=True)
class CompressResult:
    out: Path
    scheme: str
    bytes_before: int
    bytes_after: int
    max_abs_error: float  # largest |w - dequantized(w)| over all weights


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: (q, scale) with weight ~= q * scale[:, None]; an all-zero row gets scale 1."""
    w = weight.detach().to(torch.float32)
    peak = w.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.to(torch.float32) * scale.to(torch.float32)[:, None]


def _quantizable(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() and tensor.dim() == 2 and tensor.numel() >= MIN_QUANTIZED


def compress_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """The int8 file's tensors for a float state dict, and the largest absolute error it introduces."""
    out: dict[str, torch.Tensor] = {}
    worst = 0.0
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise CheckpointError(f"tensor `{name}` ends in {SCALE_SUFFIX}, which the int8 format reserves.")
        if _quantizable(tensor):
            q, scale = quantize_rows(tensor)
            worst = max(worst, float((dequantize_rows(q, scale) - tensor.to(torch.float32)).abs().max()))
            out[name], out[name + SCALE_SUFFIX] = q, scale
        else:
            out[name] = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
    return {k: v.contiguous() for k, v in out.items()}, worst


def read_int8_file(path: Path) -> dict[str, torch.Tensor]:
    """Float32 tensors of a ``model.int8.safetensors`` file (dequantized), or CheckpointError naming the fault."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            scheme = (f.metadata() or {}).get("canao_compression")
            raw = {name: f.get_tensor(name) for name in f.keys()}
    except SafetensorError as err:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({err}).") from err
    if scheme != INT8_SCHEME:
        raise CheckpointError(
            f"{path}: compression {scheme!r} is not {INT8_SCHEME!r}; it was written by another canao version: "
            "compress the float checkpoint again with `canao compress`."
        )
    state: dict[str, torch.Tensor] = {}
    for name, tensor in raw.items():
        if name.endswith(SCALE_SUFFIX):
            if name.removesuffix(SCALE_SUFFIX) not in raw:
                raise CheckpointError(f"{path}: scales `{name}` belong to no tensor.")
            continue
        if tensor.dtype != torch.int8:
            state[name] = tensor
            continue
        scale = raw.get(name + SCALE_SUFFIX)
        if scale is None or tensor.dim() != 2 or scale.shape != (tensor.shape[0],):
            raise CheckpointError(
                f"{path}: int8 tensor `{name}` {tuple(tensor.shape)} lacks its per-row scales `{name}{SCALE_SUFFIX}` "
                f"(found {None if scale is None else tuple(scale.shape)}); the file is damaged."
            )
        state[name] = dequantize_rows(tensor, scale)
    return state


def _directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _files_not_ours(path: Path) -> Optional[list[Path]]:
    """Entries of an existing output that compress did not write (None: not a checkpoint directory)."""
    if not (path / "config.json").exists():
        return None
    ours = set(CARRIED_FILES) | {INT8_FILE, "model.safetensors"}
    return [p for p in path.iterdir() if p.name not in ours]


def compress_checkpoint(source: Path, out: Path, scheme: str = "int8", *, force: bool = False) -> CompressResult:
    """Write `source` (any checkpoint directory canao reads) to `out` with `scheme` weights (temp dir, renamed)."""
    from safetensors.torch import save_file

    from canao.models.hf import read_weights

    if scheme not in SCHEMES:
        raise CheckpointError(f"unknown weight compression {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    source, out = Path(source), Path(out)
    if not (source / "config.json").exists():
        raise CheckpointError(f"{source}: no config.json; pass a checkpoint directory (Hugging Face layout).")
    if source.resolve() == out.resolve():
        raise CheckpointError(f"{out}: is the source checkpoint; write the compressed one to another directory.")
    state, _ = read_weights(source)
    if scheme == "int8":
        tensors, worst = compress_state(state)
        name, metadata = INT8_FILE, {"format": "pt", "canao_compression": INT8_SCHEME}
    else:
        tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        worst = max(
            (float((v.to(torch.float32) - state[k].to(torch.float32)).abs().max()) for k, v in tensors.items()),
            default=0.0,
        )
        name, metadata = "model.safetensors", {"format": "pt"}
    prepare_target(out, is_ours=_files_not_ours, force=force)
    tmp = temp_directory(out.parent, f".{out.name}.")
    try:
        for carried in CARRIED_FILES:
            if (source / carried).is_file():
                shutil.copy2(source / carried, tmp / carried)
        save_file(tensors, str(tmp / name), metadata=metadata)
        share_file(tmp / name)
        after = _directory_size(tmp)
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CompressResult(out, scheme, _directory_size(source), after, worst)
