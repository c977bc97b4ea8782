"""The tokenizer of an artifact as data for canao's C tokenizer (export/c/canao_tokenizer.c): tokenizer.bin.

Exact equality of ids with the `tokenizers` library is the contract, so the
Unicode behaviour is not re-derived from a Unicode database (Python's and the
Rust crates' differ in version, e.g. on emoji newer than the crate's tables):
it is *probed from the tokenizer itself*. Every code point is passed through
the tokenizer's normalizer (in batches, separated by a character the
normalizer leaves alone) and classified as kept, dropped, turned into a space,
padded with spaces (CJK) or mapped to another sequence (lowercase, accents
stripped); every code point that can come out of the normalizer is passed
through the pre-tokenizer and classified as whitespace, punctuation or other.
The tables compress into ranges, so the file stays small.

Byte-level BPE (GPT-2) needs no normalizer tables; its pre-tokenizer regex
(contractions, ` ?\\p{L}+`, ` ?\\p{N}+`, ` ?[^\\s\\p{L}\\p{N}]+`, `\\s+(?!\\S)`, `\\s+`) runs in C
over per-code-point classes (letter, number, whitespace, other) probed the same way.

Format (little-endian u32 unless noted), version 1:

    "CNTK" version kind (1 = WordPiece, 2 = byte-level BPE)

WordPiece:
    n_ranges, then (lo, hi, kind) with kind 1 drop, 2 space, 3 pad, 4 map   (anything else: kept)
    n_maps, then (cp, pool offset, length); pool length, then the pool (code points)
    n_classes, then (lo, hi, class) with class 1 whitespace, 2 punctuation  (anything else: other)
    vocab size, then per id: byte length, UTF-8 bytes
    unk id, max input chars per word, prefix byte length, prefix bytes
    n_added, then per added token: id, byte length, bytes (matched in the raw text before normalisation)
    cls id, sep id (0xFFFFFFFF: none)

Byte-level BPE:

    n_classes, then (lo, hi, class) with class 1 letter, 2 number, 3 whitespace   (anything else: other)
    vocab size, then per id: byte length, UTF-8 bytes
    n_merges, then (left id, right id, merged id) in rank order
    n_added, then per added token: id, byte length, bytes
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from canao.errors import CanaoError

MAGIC = b"CNTK"
VERSION = 1
KEEP, DROP, SPACE, PAD, MAP = 0, 1, 2, 3, 4
OTHER, WHITESPACE, PUNCT = 0, 1, 2
NONE = 0xFFFFFFFF
SEPARATOR = "|"  # the normalizer keeps it as it is; checked per batch
MAX_CP = 0x110000


class ExportError(CanaoError, ValueError):
    """The artifact cannot be exported as asked (unsupported tokenizer, target)."""


def _code_points() -> list[int]:
    return [cp for cp in range(MAX_CP) if not 0xD800 <= cp <= 0xDFFF]


def normalizer_actions(tokenizer: Any, batch: int = 2048) -> dict[int, str]:
    """{code point: normalized text} for every code point the normalizer changes."""
    normalize = tokenizer.normalizer.normalize_str if tokenizer.normalizer is not None else (lambda s: s)
    if normalize(SEPARATOR) != SEPARATOR:
        raise ExportError(f"the normalizer changes {SEPARATOR!r}; cannot probe it in batches.")
    changed: dict[int, str] = {}
    cps = _code_points()
    for first in range(0, len(cps), batch):
        chunk = [chr(cp) for cp in cps[first : first + batch]]
        parts = normalize(SEPARATOR.join(chunk)).split(SEPARATOR)
        if len(parts) != len(chunk):  # some output contains the separator: probe this batch one by one
            parts = [normalize(c) for c in chunk]
        for c, out in zip(chunk, parts):
            if out != c:
                changed[ord(c)] = out
    return changed


def pretokenizer_classes(tokenizer: Any, cps: list[int], batch: int = 2048) -> dict[int, int]:
    """{code point: WHITESPACE or PUNCT} for the given code points (the rest are OTHER)."""
    pre = tokenizer.pre_tokenizer
    if pre is None:
        return {}
    classes: dict[int, int] = {}
    for first in range(0, len(cps), batch):
        chunk = cps[first : first + batch]
        text = "a" + "a".join(chr(cp) for cp in chunk) + "a"  # char i sits at index 2i + 1
        spans = {(s, e) for _, (s, e) in pre.pre_tokenize_str(text)}
        covered: set[int] = set()
        for s, e in spans:
            covered.update(range(s, e))
        for i, cp in enumerate(chunk):
            at = 2 * i + 1
            if at not in covered:
                classes[cp] = WHITESPACE  # removed
            elif (at, at + 1) in spans:
                classes[cp] = PUNCT  # isolated: a letter on either side would otherwise join it
    return classes


def _ranges(kinds: dict[int, int]) -> list[tuple[int, int, int]]:
    """Runs of equal non-default kinds: [(lo, hi, kind)], hi inclusive."""
    out: list[tuple[int, int, int]] = []
    for cp in sorted(kinds):
        kind = kinds[cp]
        if out and out[-1][1] == cp - 1 and out[-1][2] == kind:
            out[-1] = (out[-1][0], cp, kind)
        else:
            out.append((cp, cp, kind))
    return out


LETTER, NUMBER, SPACE_CLASS = 1, 2, 3


def byte_level_classes(tokenizer: Any, batch: int = 4096) -> dict[int, int]:
    """{code point: LETTER / NUMBER / SPACE_CLASS} as the ByteLevel pre-tokenizer's regex sees them.

    Probes, per code point X, in batches joined by newlines: "aX" is one piece iff X is a letter, "1X" iff
    a number; else "X!" is one piece iff X is "other" (neither whitespace nor letter nor number). A probe
    is read by its offsets, so neighbours in the batch cannot blur it. U+0020 is whitespace by definition."""
    pre = tokenizer.pre_tokenizer
    out: dict[int, int] = {ord(" "): SPACE_CLASS}

    def whole(probes: list[str]) -> list[bool]:
        """Whether each two-character probe comes out as one piece."""
        spans = {span for _, span in pre.pre_tokenize_str("\n".join(probes))}
        return [(3 * i, 3 * i + 2) in spans for i in range(len(probes))]

    cps = [cp for cp in _code_points() if cp != ord(" ")]
    for first in range(0, len(cps), batch):
        chunk = [chr(cp) for cp in cps[first : first + batch]]
        letters, numbers = whole(["a" + c for c in chunk]), whole(["1" + c for c in chunk])
        others = whole([c + "!" for c in chunk])
        for c, is_letter, is_number, is_other in zip(chunk, letters, numbers, others):
            if is_letter:
                out[ord(c)] = LETTER
            elif is_number:
                out[ord(c)] = NUMBER
            elif not is_other:
                out[ord(c)] = SPACE_CLASS
    return out


def bpe_tables(tokenizer: Any) -> dict[str, Any]:
    config = json.loads(tokenizer.to_str())
    model, pre = config.get("model") or {}, config.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        raise ExportError("the C tokenizer supports byte-level BPE with the GPT-2 regex and no prefix space.")
    if config.get("normalizer") is not None or model.get("dropout") or model.get("continuing_subword_prefix"):
        raise ExportError("the C tokenizer supports plain GPT-2 BPE (no normalizer, dropout or prefixes).")
    vocab = model["vocab"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    triples = [(vocab[a], vocab[b], vocab[a + b]) for a, b in merges]
    size = max(vocab.values()) + 1
    by_id = [""] * size
    for token, i in vocab.items():
        by_id[i] = token
    added = [(int(t["id"]), str(t["content"])) for t in config.get("added_tokens", []) if not t.get("normalized")]
    return {"classes": _ranges(byte_level_classes(tokenizer)), "vocab": by_id, "merges": triples, "added": added}


def tokenizer_tables(tokenizer: Any) -> dict[str, Any]:
    """Probe `tokenizer` (a tokenizers.Tokenizer with a WordPiece model) into the C tokenizer's tables."""
    config = json.loads(tokenizer.to_str())
    model = config.get("model") or {}
    if model.get("type") != "WordPiece":
        raise ExportError(
            f"the C tokenizer supports WordPiece (BERT) tokenizers for now; this one is {model.get('type')}."
        )
    changed = normalizer_actions(tokenizer)
    kinds: dict[int, int] = {}
    maps: dict[int, list[int]] = {}
    for cp, out in changed.items():
        if out == "":
            kinds[cp] = DROP
        elif out == " ":
            kinds[cp] = SPACE
        elif out == f" {chr(cp)} ":
            kinds[cp] = PAD
        else:
            kinds[cp] = MAP
            maps[cp] = [ord(c) for c in out]
    produced = {cp for cp in _code_points() if kinds.get(cp, KEEP) in (KEEP, PAD)}
    produced.update(c for seq in maps.values() for c in seq)
    produced.add(ord(" "))
    classes = pretokenizer_classes(tokenizer, sorted(produced))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    by_id = [""] * size
    for token, i in vocab.items():
        by_id[i] = token
    added = [
        (int(t["id"]), str(t["content"]))
        for t in config.get("added_tokens", [])
        if t.get("special") and not t.get("normalized") and not t.get("single_word")
    ]
    post = config.get("post_processor") or {}
    specials = {
        name: int(post.get("special_tokens", {}).get(name, {}).get("ids", [NONE])[0]) for name in ("[CLS]", "[SEP]")
    }
    return {
        "ranges": _ranges({cp: k for cp, k in kinds.items() if k != MAP} | {cp: MAP for cp in maps}),
        "maps": maps,
        "classes": _ranges(classes),
        "vocab": by_id,
        "unk": vocab[model.get("unk_token", "[UNK]")],
        "max_chars": int(model.get("max_input_chars_per_word", 100)),
        "prefix": model.get("continuing_subword_prefix", "##"),
        "added": added,
        "cls": specials["[CLS]"],
        "sep": specials["[SEP]"],
    }


def _pack_strings(u32: struct.Struct, strings: list[str]) -> list[bytes]:
    parts = [u32.pack(len(strings))]
    for text in strings:
        raw = text.encode("utf-8")
        parts += [u32.pack(len(raw)), raw]
    return parts


def _pack_added(u32: struct.Struct, added: list[tuple[int, str]]) -> list[bytes]:
    parts = [u32.pack(len(added))]
    for i, content in added:
        raw = content.encode("utf-8")
        parts += [u32.pack(i), u32.pack(len(raw)), raw]
    return parts


_WRITTEN: dict[str, tuple[bytes, dict[str, int]]] = {}  # sha256 of the tokenizer's JSON -> (data, sizes)


def write_tokenizer_data(tokenizer: Any, path: Path) -> dict[str, int]:
    """Write tokenizer.bin for the C tokenizer (WordPiece or byte-level BPE); returns sizes (for reports).

    Probing takes seconds (WordPiece) to a minute (byte-level BPE), so the result is kept per tokenizer for
    the life of the process: exporting several models that share a tokenizer probes it once."""
    key = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()
    if key not in _WRITTEN:
        _WRITTEN[key] = _tokenizer_data(tokenizer)
    data, sizes = _WRITTEN[key]
    Path(path).write_bytes(data)
    return dict(sizes)


def _tokenizer_data(tokenizer: Any) -> tuple[bytes, dict[str, int]]:
    kind = (json.loads(tokenizer.to_str()).get("model") or {}).get("type")
    u32 = struct.Struct("<I")
    if kind == "BPE":
        b = bpe_tables(tokenizer)
        parts = [MAGIC, u32.pack(VERSION), u32.pack(2), u32.pack(len(b["classes"]))]
        parts += [struct.pack("<III", *c) for c in b["classes"]]
        parts += _pack_strings(u32, b["vocab"])
        parts += [u32.pack(len(b["merges"])), *(struct.pack("<III", *m) for m in b["merges"])]
        parts += _pack_added(u32, b["added"])
        data = b"".join(parts)
        return data, {"bytes": len(data), "classes": len(b["classes"]), "merges": len(b["merges"])}
    t = tokenizer_tables(tokenizer)
    parts = [MAGIC, u32.pack(VERSION), u32.pack(1), u32.pack(len(t["ranges"]))]
    parts += [struct.pack("<III", lo, hi, kind) for lo, hi, kind in t["ranges"]]
    pool: list[int] = []
    entries = []
    for cp in sorted(t["maps"]):
        seq = t["maps"][cp]
        entries.append(struct.pack("<III", cp, len(pool), len(seq)))
        pool.extend(seq)
    parts += [u32.pack(len(entries)), *entries, u32.pack(len(pool)), struct.pack(f"<{len(pool)}I", *pool)]
    parts += [u32.pack(len(t["classes"])), *(struct.pack("<III", *c) for c in t["classes"])]
    parts += _pack_strings(u32, t["vocab"])
    prefix = t["prefix"].encode("utf-8")
    parts += [u32.pack(t["unk"]), u32.pack(t["max_chars"]), u32.pack(len(prefix)), prefix]
    parts += _pack_added(u32, t["added"])
    parts += [u32.pack(t["cls"] & NONE), u32.pack(t["sep"] & NONE)]
    data = b"".join(parts)
    return data, {"bytes": len(data), "ranges": len(t["ranges"]), "maps": len(t["maps"]), "classes": len(t["classes"])}
