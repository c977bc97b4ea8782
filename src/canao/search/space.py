"""Default search spaces, around the default teacher (all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads of 32, FFN 1536).

Every member is a leading slice of the teacher (elastic weight sharing), so
the teacher is the supernet. Head size stays 32 (the teacher's); per layer
the search picks 4 to 12 heads and an FFN of 384 to 1536; the model picks
2 to 6 layers and a hidden size of 256, 320 or 384. That is
3 x sum_{L=2..6} 16^L = about 5.4e7 architectures, as heterogeneous as
CANAO's space (arXiv 2009.06823, Sec. 3.1).

Example::

    space = default_encoder_space()
    spec = space.sample(np.random.default_rng(0))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from canao.arch import SearchSpace
from canao.errors import SpecError
from canao.storage import read_user_json_object


def default_encoder_space() -> SearchSpace:
    return SearchSpace(
        kind="encoder",
        vocab_size=30522,
        max_positions=512,
        hidden_choices=(256, 320, 384),
        layer_choices=(2, 3, 4, 5, 6),
        heads_choices=(4, 6, 8, 12),
        head_dim=32,
        ffn_choices=(384, 768, 1152, 1536),
    )


def load_space(path: Optional[Path]) -> SearchSpace:
    """A SearchSpace JSON file (errors name the file), or the default encoder space when `path` is None.

    A search's space file (search/candidates.py) is accepted too: its precisions and sequence lengths are not
    part of the architecture space (`canao profile` takes them as --precision and --seq-lens)."""
    if path is None:
        return default_encoder_space()
    data = read_user_json_object(path, "a SearchSpace JSON file", SpecError)
    # a search's space file also names precisions and sequence lengths
    arch = {k: v for k, v in data.items() if k not in ("precisions", "seq_lens")}
    try:
        return SearchSpace.from_json(json.dumps(arch))
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
