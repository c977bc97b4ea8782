"""Tokenizers from a local checkpoint directory, through the `tokenizers` library.

Looks, in order, for tokenizer.json (any fast tokenizer), vocab.txt (BERT
WordPiece; lower-casing from tokenizer_config.json's `do_lower_case`) and
vocab.json + merges.txt (GPT-2 byte-level BPE). Padding and truncation saved
inside tokenizer.json are switched off: callers choose them per request.

Example::

    tok = load_tokenizer(Path("checkpoints/minilm"))
    tok.encode("what is canao?").ids
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from canao.errors import CheckpointError

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def _lowercase_flag(directory: Path) -> bool:
    config = directory / "tokenizer_config.json"
    if not config.exists():
        return True
    try:
        return bool(json.loads(config.read_text()).get("do_lower_case", True))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config}: not valid JSON ({err}).") from err


def load_tokenizer(directory: Path | str) -> Tokenizer:
    """The checkpoint's tokenizer with padding and truncation disabled."""
    directory = Path(directory)
    tok: Any  # a Tokenizer, or one of the tokenizers.implementations wrappers (same encode/decode API)
    if (directory / "tokenizer.json").exists():
        try:
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as err:  # the Rust side raises a bare Exception on parse errors
            raise CheckpointError(f"{directory / 'tokenizer.json'}: cannot be read as a tokenizer ({err}).") from err
    elif (directory / "vocab.txt").exists():
        from tokenizers.implementations import BertWordPieceTokenizer

        tok = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=_lowercase_flag(directory))
    elif (directory / "vocab.json").exists() and (directory / "merges.txt").exists():
        from tokenizers.implementations import ByteLevelBPETokenizer

        tok = ByteLevelBPETokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    else:
        raise CheckpointError(
            f"{directory}: no tokenizer found; expected tokenizer.json, vocab.txt (WordPiece) "
            "or vocab.json + merges.txt (byte-level BPE)."
        )
    if isinstance(tok, Tokenizer):
        tok.no_padding()
        tok.no_truncation()
        return tok
    tok.no_padding()
    tok.no_truncation()
    return tok._tokenizer  # the implementation wrapper holds a plain Tokenizer


def save_tokenizer(tok: Tokenizer, directory: Path) -> None:
    """Write tokenizer.json, the one file every fast-tokenizer loader reads."""
    tok.save(str(directory / "tokenizer.json"))
