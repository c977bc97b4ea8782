"""The C ABI of a generated model library: its version and its error codes, shared by codegen and runtime.

Code generation writes these into every model's C source; the runtime checks
the version of a library before calling it and turns error codes into
messages. Keeping them here lets the runtime load and run a model without
importing the code generator.

Example::

    if lib.canao_abi_version() != ABI_VERSION: ...
"""

from __future__ import annotations

ABI_VERSION = 3

# canao_forward's return codes (0 is success); the C side's canao_error_message spells the same text.
ERRORS: dict[int, str] = {
    1: "sequence length out of range (need 1 <= T and past + T <= max positions)",
    2: "a token id is out of the vocabulary range",
    3: "a token type id is out of range",
    4: "out of memory for the kernels' scratch buffers",
}

# Symbols every model library exports (see codegen/c.py), checked on load.
REQUIRED_SYMBOLS = (
    "canao_forward",
    "canao_abi_version",
    "canao_graph_hash",
    "canao_arena_floats",
    "canao_weight_floats",
    "canao_error_message",
    "canao_set_threads",
    "canao_vector_width",
)
