"""Running a compiled model: input checks, the native call, outputs; encoders and KV-cached decoders.

Everything is checked in Python before native code runs (shape, dtype,
emptiness, length <= max positions, ids in range), and the C entry point
checks lengths and ids again and returns an error code instead of touching
memory out of range, so bad input raises `InputError` and never crashes the
process. This module imports numpy and ctypes only (never the passes, the code
generator or the toolchain: compiling is canao.compiler.build's job), so a
deployed artifact runs without torch or a C compiler.

Example::

    model = build(lower_model(torch_model)).load()             # or load_artifact(path).model
    out = model.run(input_ids, attention_mask)                 # encoder
    session = model.new_session(); session.prefill(ids); session.decode_step(token)  # decoder
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from canao.arch import ArchSpec
from canao.compiler.abi import ABI_VERSION, REQUIRED_SYMBOLS
from canao.compiler.ir import Graph, graph_hash
from canao.errors import CanaoError

MASK_MIN = float(np.finfo(np.float32).min)  # additive mask value for padded keys, as in PyTorch/HF
MAX_THREADS = 256  # OpenMP threads one model may be given; more only thrashes (and huge counts crash libgomp)


def prefer_passive_waiting() -> None:
    """Make OpenMP threads sleep, not spin, between parallel regions, unless the user chose otherwise.

    A model opens a parallel region per fused op, so its threads wait at a
    barrier dozens of times per call. libgomp spins there by default, which
    on a busy machine (a server running several models) burns the time slices
    the threads being waited for need: benchmarks/wait_policy.py measures a
    1-token call and a decode step collapsing under load with spinning and
    not with passive waiting (docs/wait-policy.md). libgomp reads the policy
    once, when it is loaded, so this runs before the first model library is."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


class InputError(CanaoError, ValueError):
    """Input to a compiled model is malformed (shape, dtype, range)."""


class RuntimeLoadError(CanaoError, RuntimeError):
    """A compiled library or weight file is missing, corrupt or does not match its graph."""


def aligned_empty(floats: int, align_bytes: int = 64) -> np.ndarray:
    """A float32 array whose data pointer is `align_bytes`-aligned (for vector loads)."""
    raw = np.zeros(floats + align_bytes // 4, dtype=np.float32)
    shift = (-raw.ctypes.data % align_bytes) // 4
    return raw[shift : shift + floats]


def _as_token_matrix(name: str, value: Any, *, upper: int, max_len: int) -> np.ndarray:
    """Validate ids: integers, 1-D or 2-D, non-empty, length <= max_len, 0 <= id < upper -> (B, T) int32."""
    array = np.asarray(value)
    if array.dtype.kind not in "iub":  # signed, unsigned, bool; not timedelta64 ("m"), which numpy calls integer
        raise InputError(f"`{name}` must hold integers, but got dtype {array.dtype}.")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise InputError(f"`{name}` must have shape (T,) or (B, T), but got shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"`{name}` is empty (shape {array.shape}); give at least one token.")
    if array.shape[1] > max_len:
        raise InputError(
            f"`{name}` has {array.shape[1]} tokens, but the model takes at most {max_len} "
            "(its max positions); truncate or split the input."
        )
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= upper:
        bad = low if low < 0 else high
        raise InputError(f"`{name}` holds {bad}, outside [0, {upper}); check the tokenizer matches the model.")
    return np.ascontiguousarray(array, dtype=np.int32)


@dataclass(frozen=True)
class NativeLibrary:
    """The loaded shared library with typed entry points."""

    path: Path
    lib: ctypes.CDLL

    @classmethod
    def load(cls, path: Path) -> "NativeLibrary":
        prefer_passive_waiting()
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as err:
            raise RuntimeLoadError(
                f"{path}: cannot be loaded as a shared library ({err}); recompile the model."
            ) from err
        for name in REQUIRED_SYMBOLS:
            if not hasattr(lib, name):
                raise RuntimeLoadError(f"{path}: symbol `{name}` is missing; this is not a canao model library.")
        lib.canao_forward.restype = ctypes.c_int
        lib.canao_forward.argtypes = [ctypes.c_void_p] * 5 + [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        lib.canao_error_message.restype = ctypes.c_char_p
        lib.canao_error_message.argtypes = [ctypes.c_int]
        lib.canao_graph_hash.restype = ctypes.c_char_p
        lib.canao_arena_floats.restype = ctypes.c_long
        lib.canao_weight_floats.restype = ctypes.c_long
        lib.canao_set_threads.argtypes = [ctypes.c_int]
        if lib.canao_abi_version() != ABI_VERSION:
            raise RuntimeLoadError(
                f"{path}: ABI version {lib.canao_abi_version()} != {ABI_VERSION}; recompile the model."
            )
        return cls(path, lib)


class CompiledModel:
    """A model compiled for this CPU: the final graph, its weight blob and the native library."""

    def __init__(
        self, graph: Graph, weights: np.ndarray, library: NativeLibrary, *, simd: str, threads: int = 2
    ) -> None:
        self.graph, self.library, self.simd = graph, library, simd
        self.spec = ArchSpec.from_dict(dict(graph.meta["spec"]))
        self.task = str(graph.meta["task"])
        lib = library.lib
        expected = graph_hash(graph)
        if lib.canao_graph_hash().decode() != expected:
            raise RuntimeLoadError(
                f"{library.path}: built for graph {lib.canao_graph_hash().decode()}, "
                f"but the graph is {expected}; recompile the model."
            )
        if weights.size != lib.canao_weight_floats():
            raise RuntimeLoadError(
                f"weights hold {weights.size} floats, but the library expects "
                f"{lib.canao_weight_floats()}; the weight file is truncated or from another build."
            )
        self.weights = aligned_empty(weights.size)
        self.weights[:] = weights
        self.arena = aligned_empty(int(lib.canao_arena_floats()))
        self._lock = threading.Lock()  # one arena: calls are serialised
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        """OpenMP threads for the following calls (1..MAX_THREADS)."""
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
            raise InputError(f"`1 <= threads <= {MAX_THREADS}` must hold, but got threads={threads!r}.")
        self.threads = int(threads)
        self.library.lib.canao_set_threads(self.threads)

    # ------------------------------------------------------------- running
    def _forward(
        self,
        ids: np.ndarray,
        type_ids: Optional[np.ndarray],
        mask: Optional[np.ndarray],
        caches: Optional[list[np.ndarray]],
        past: int,
    ) -> None:
        cache_ptrs = None
        if caches:
            cache_ptrs = (ctypes.c_void_p * len(caches))(*(c.ctypes.data for c in caches))
        code = self.library.lib.canao_forward(
            self.weights.ctypes.data,
            self.arena.ctypes.data,
            ids.ctypes.data,
            None if type_ids is None else type_ids.ctypes.data,
            None if mask is None else mask.ctypes.data,
            cache_ptrs,
            int(ids.shape[0]),
            int(past),
            None,
        )
        if code != 0:
            raise InputError(f"native model refused the input: {self.library.lib.canao_error_message(code).decode()}.")

    def _output(self, name: str, tokens: int, keys: int) -> np.ndarray:
        shape = self.graph.types[name].concrete(tokens, keys, self.spec.max_positions)
        offset = self.graph.meta["memory_plan"][name]
        return self.arena[offset : offset + int(np.prod(shape))].reshape(shape).copy()

    def run(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> dict[str, np.ndarray]:
        """Encoder forward for a (B, T) or (T,) batch. Returns the task's outputs with a batch axis:
        backbone: last_hidden_state (B,T,H), pooled (B,H); classification: logits (B,C);
        qa: start_logits, end_logits (B,T)."""
        if self.spec.kind != "encoder":
            raise InputError("run() is for encoders; use new_session() with prefill/decode_step for a decoder.")
        limit = self.spec.max_positions
        ids = _as_token_matrix("input_ids", input_ids, upper=self.spec.vocab_size, max_len=limit)
        types = (
            np.zeros_like(ids)
            if token_type_ids is None
            else _as_token_matrix(
                "token_type_ids", token_type_ids, upper=max(self.spec.type_vocab_size, 1), max_len=limit
            )
        )
        keep = (
            np.ones_like(ids)
            if attention_mask is None
            else _as_token_matrix("attention_mask", attention_mask, upper=2, max_len=limit)
        )
        for name, other in (("token_type_ids", types), ("attention_mask", keep)):
            if other.shape != ids.shape:
                raise InputError(f"`{name}` has shape {other.shape}, but input_ids has {ids.shape}; they must match.")
        rows = []
        with self._lock:
            for b in range(ids.shape[0]):
                mask = np.ascontiguousarray((1.0 - keep[b]) * MASK_MIN, dtype=np.float32)
                self._forward(ids[b], types[b], mask, None, 0)
                t = ids.shape[1]
                rows.append({name: self._output(name, t, t) for name in self.graph.outputs})
        return self._name_outputs(rows)

    def _name_outputs(self, rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        if self.task == "qa":
            (logits,) = stacked.values()
            return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
        if self.task == "classification":
            (logits,) = stacked.values()
            return {"logits": logits[:, 0]}
        hidden, pooled = (stacked[name] for name in self.graph.outputs)
        return {"last_hidden_state": hidden, "pooled": pooled[:, 0]}

    def new_session(self) -> "DecoderSession":
        if self.spec.kind != "decoder":
            raise InputError("new_session() is for decoders; use run() for an encoder.")
        return DecoderSession(self)


class DecoderSession:
    """One generation stream: owns the KV cache (max positions rows per layer)."""

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        graph = model.graph
        self.caches = [
            aligned_empty(int(np.prod(graph.types[name].concrete(0, 0, model.spec.max_positions))))
            for name in graph.inputs
            if name.startswith("cache_")
        ]
        self.length = 0

    def reset(self) -> None:
        self.length = 0

    def _step(self, token_ids: Any) -> np.ndarray:
        m = self.model
        room = m.spec.max_positions - self.length
        if room <= 0:
            raise InputError(f"the context is full ({m.spec.max_positions} tokens); reset() the session.")
        ids = _as_token_matrix("input_ids", token_ids, upper=m.spec.vocab_size, max_len=room)
        if ids.shape[0] != 1:
            raise InputError(f"a session decodes one sequence; got a batch of {ids.shape[0]}.")
        with m._lock:
            m._forward(ids[0], None, None, self.caches, self.length)
            t = ids.shape[1]
            logits = m._output(m.graph.outputs[0], t, self.length + t)
        self.length += ids.shape[1]
        return logits

    def prefill(self, input_ids: Any) -> np.ndarray:
        """Run the prompt (starting a new context); returns logits (T, vocab)."""
        self.reset()
        return self._step(input_ids)

    def decode_step(self, token_id: Any) -> np.ndarray:
        """Append one or more tokens to the context; returns their logits (T, vocab)."""
        return self._step(np.atleast_1d(np.asarray(token_id)))
