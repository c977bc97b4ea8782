"""Code generation: the C source of a lowered graph, the kernels it inlines, and the native runner/profiler."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

_HERE = Path(__file__).parent
# what decides how fast a compiled block runs and how it is timed: the kernels and model header, the generator
# of the model's C source, and the profiler (its C harness and the Python side that drives it)
_TIMED_SOURCES = ("canao_kernels.h", "canao_model.h", "c.py", "profiler.py", "profiler_main.c")


@functools.lru_cache(maxsize=1)
def kernel_digest() -> str:
    """A short digest of the code that compiled blocks run and are timed with. Device profiles record it:
    timings measured with other kernels (another canao version) mispredict today's code, and must not be mixed
    with new ones when a profile is resumed."""
    digest = hashlib.sha256()
    for name in _TIMED_SOURCES:
        digest.update(name.encode() + b"\0" + (_HERE / name).read_bytes())
    return digest.hexdigest()[:12]
