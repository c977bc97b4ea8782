"""A stand-alone runner executable around a generated model, for cross-targets and sanitizers.

The in-process path loads the model as a shared library; the runner links
the same generated C with the main() of runner_main.c (plain C, compiled as
it is) that reads the weight blob and a file of calls and writes the
outputs, so the model can run under qemu-aarch64 (the phone CPU's NEON path)
or as an AddressSanitizer/UBSan build, and be checked against the reference
executor.

Calls file (little-endian): int32 n_calls, then per call int32 T, int32 past,
int32 ids[T], int32 type_ids[T], float32 mask[T]. Output file: per call, each
graph output's floats in order.

Example::

    exe = build_executable(generate_c(final_graph), simd="neon", compiler=CROSS_CC, extra_sources=(RUNNER_MAIN,))
    write_calls(path, [(ids, types, mask, past)])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from canao.compiler.ir import Graph

RUNNER_MAIN = Path(__file__).with_name("runner_main.c")
Call = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # ids, type_ids, additive mask, past


def write_calls(path: Path, calls: Sequence[Call]) -> None:
    parts = [np.array([len(calls)], dtype=np.int32)]
    for ids, types, mask, past in calls:
        parts += [
            np.array([len(ids), past], dtype=np.int32),
            np.asarray(ids, np.int32),
            np.asarray(types, np.int32),
            np.asarray(mask, np.float32).view(np.int32),
        ]
    np.concatenate(parts).tofile(path)


def read_outputs(path: Path, graph: Graph, calls: Sequence[Call]) -> list[dict[str, np.ndarray]]:
    data = np.fromfile(path, dtype=np.float32)
    results, cursor = [], 0
    m = int(graph.meta["max_positions"])
    for ids, _, _, past in calls:
        t = len(ids)
        row = {}
        for name in graph.outputs:
            shape = graph.types[name].concrete(t, past + t, m)
            size = int(np.prod(shape))
            row[name] = data[cursor : cursor + size].reshape(shape)
            cursor += size
        results.append(row)
    if cursor != data.size:
        raise ValueError(f"{path}: {data.size} floats, expected {cursor}.")
    return results
