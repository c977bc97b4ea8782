"""canao: compiler-aware architecture search, distillation and compilation of transformers.

Importing the package is light: it pulls in the ArchSpec vocabulary only;
models (torch) load when `canao.models` is imported.
"""

from __future__ import annotations

from canao.arch import ArchSpec, LayerSpec, SearchSpace
from canao.errors import CanaoError

__version__ = "0.1.0"
__all__ = ["ArchSpec", "LayerSpec", "SearchSpace", "CanaoError", "__version__"]
