"""weights.bin of an exported model: one section per SIMD level, each a packed weight blob behind a 64-byte
header the C API checks.

A raw blob of the right size runs with wrong numbers if it is damaged or
belongs to another build, and a phone app has no Python to catch that. The
header lets `canao_model_open` (export/c/canao_api.c) refuse it with a reason.
The panel width of the packed weights depends on the vector width, so an x86-64
package holds an AVX-512 and an AVX2 section (and more where a level packs
differently), one after the other; each level's dispatch entry names the
section it reads, and the C API reads that one. Each section's header:

    0  magic "CANAOWB1"          8  u32 header bytes (64)     12  u32 model ABI version
    16 graph hash (16 chars)     32 SIMD level (16 bytes, NUL-padded)
    48 u64 float count           56 u64 checksum: sum of w_i * (2i + 1) over the data's 32-bit words, mod 2^64

all little-endian, then the floats, zero-padded to a multiple of 64 bytes so
that every section's data is 64-byte aligned in the file: the C API maps the
file and runs the weights in place (no copy; on a phone the pages are shared
with the page cache). Odd multipliers are invertible modulo
2^64, so changing any one word changes the checksum; a truncated file fails
the size check first.

Example::

    write_weights_file(Path("out/weights.bin"), [Section(blob, graph_hash(graph), "avx2")])
    [(header, blob)] = read_weights_file(Path("out/weights.bin"))
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canao.compiler.abi import ABI_VERSION
from canao.errors import CanaoError

MAGIC = b"CANAOWB1"
HEADER_BYTES = 64
_LAYOUT = struct.Struct("<8sII16s16sQQ")
_CHUNK = 1 << 22  # words per checksum chunk (bounds the temporary arrays)


class WeightsFileError(CanaoError, ValueError):
    """A weights.bin that is not one, or is truncated or damaged."""


@dataclass(frozen=True)
class WeightsHeader:
    abi_version: int
    graph_hash: str
    simd: str
    floats: int
    checksum: int


def checksum(blob: np.ndarray) -> int:
    """Sum over the blob's 32-bit words of w_i * (2i + 1), modulo 2^64 (numpy's uint64 arithmetic wraps)."""
    words = np.ascontiguousarray(blob).view(np.uint32).ravel()
    total = np.uint64(0)
    for start in range(0, words.size, _CHUNK):
        chunk = words[start : start + _CHUNK].astype(np.uint64)
        weights = np.arange(start, start + chunk.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        with np.errstate(over="ignore"):  # the wrap modulo 2^64 is the definition, not an accident
            total = total + np.sum(chunk * weights, dtype=np.uint64)
    return int(total)


@dataclass(frozen=True)
class Section:
    blob: np.ndarray  # the packed weights of one build
    graph_hash: str  # canao.compiler.ir.graph_hash of that build's final graph
    simd: str  # its SIMD level


def encode_section(blob: np.ndarray, graph_hash: str, simd: str) -> bytes:
    data = np.ascontiguousarray(blob, dtype=np.float32)
    if len(graph_hash) != 16 or len(simd.encode()) > 16:
        raise WeightsFileError(f"graph hash must be 16 characters and the SIMD name at most 16 bytes: {graph_hash!r}")
    header = _LAYOUT.pack(
        MAGIC, HEADER_BYTES, ABI_VERSION, graph_hash.encode(), simd.encode(), data.size, checksum(data)
    )
    body = data.astype("<f4").tobytes()
    return header + body + bytes(-len(body) % HEADER_BYTES)


def write_weights_file(path: Path, sections: list[Section]) -> None:
    """Write the sections, most capable level first (callers write into a temporary directory that is renamed
    into place when complete)."""
    with Path(path).open("wb") as f:
        for section in sections:
            f.write(encode_section(section.blob, section.graph_hash, section.simd))


def read_weights_file(path: Path) -> list[tuple[WeightsHeader, np.ndarray]]:
    """Every section's header and floats, with the C API's checks (for tests and inspection)."""
    raw = Path(path).read_bytes()
    out: list[tuple[WeightsHeader, np.ndarray]] = []
    at = 0
    while at < len(raw) or not out:
        if len(raw) - at < HEADER_BYTES or raw[at : at + 8] != MAGIC:
            raise WeightsFileError(f"{path}: not a canao weights file (no {MAGIC.decode()} header at byte {at}).")
        _, size, abi, ghash, simd, floats, check = _LAYOUT.unpack(raw[at : at + HEADER_BYTES])
        if size != HEADER_BYTES or len(raw) - at - HEADER_BYTES < 4 * floats:
            raise WeightsFileError(f"{path}: truncated ({4 * floats} data bytes announced at byte {at}).")
        level = simd.rstrip(b"\0").decode(errors="replace")
        blob = np.frombuffer(raw, dtype="<f4", count=floats, offset=at + HEADER_BYTES).astype(np.float32)
        padded = 4 * floats + (-4 * floats) % HEADER_BYTES
        if len(raw) - at - HEADER_BYTES < padded:
            raise WeightsFileError(f"{path}: truncated (the section at byte {at} lacks its padding).")
        if checksum(blob) != check:
            raise WeightsFileError(f"{path}: damaged (checksum mismatch in the {level} section).")
        out.append((WeightsHeader(abi, ghash.decode(errors="replace"), level, floats, check), blob))
        at += HEADER_BYTES + padded
    return out
