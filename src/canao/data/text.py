"""Plain text for language modelling: tokenised once, packed into fixed-length blocks.

Every block holds `block_size + 1` token ids, so that inputs are block[:-1]
and targets block[1:] (next-token prediction with no padding, as GPT-2 and
nanoGPT train); the tail shorter than a block is dropped.

Example::

    blocks = pack_blocks(tokenizer.encode(text).ids, block_size=128)   # (N, 129) int64
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canao.errors import DataError
from canao.storage import read_user_text


def read_text(path: Path | str) -> str:
    return read_user_text(path, "a UTF-8 text file", DataError)


def pack_blocks(ids: list[int] | np.ndarray, block_size: int) -> np.ndarray:
    if block_size < 1:
        raise DataError(f"`block_size >= 1` must hold, but got {block_size=}.")
    ids = np.asarray(ids, dtype=np.int64)
    n = (len(ids) - 1) // block_size
    if n < 1:
        raise DataError(f"the text has {len(ids)} tokens, too few for one block of {block_size} + 1.")
    return np.stack([ids[i * block_size : (i + 1) * block_size + 1] for i in range(n)])
