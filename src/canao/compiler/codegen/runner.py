"""A stand-alone runner executable around a generated model, for cross-targets and sanitizers.

The in-process path loads the model as a shared library; the runner wraps the
same generated C with a main() that reads the weight blob and a file of calls
and writes the outputs, so the model can run under qemu-aarch64 (the phone
CPU's NEON path) or as an AddressSanitizer/UBSan build, and be checked
against the reference executor.

Calls file (little-endian): int32 n_calls, then per call int32 T, int32 past,
int32 ids[T], int32 type_ids[T], float32 mask[T]. Output file: per call, each
graph output's floats in order.

Example::

    source = generate_runner(final_graph)
    write_calls(path, [(ids, types, mask, past)])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from canao.compiler.codegen.c import generate_c
from canao.compiler.ir import Graph

Call = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # ids, type_ids, additive mask, past


def _count_expr(graph: Graph, name: str) -> str:
    """C expression for the number of floats in output `name` given T and S."""
    dims = [{"T": "T", "S": "(past + T)", "M": "MAX_POSITIONS"}.get(d, str(d)) if isinstance(d, str) else str(d)
            for d in graph.types[name].shape]
    return " * ".join(f"(long){d}" for d in dims)


def generate_runner(graph: Graph, *, mr: int = 6) -> str:
    caches = [n for n in graph.inputs if n.startswith("cache_")]
    plan = graph.meta["memory_plan"]
    cache_sizes = [f"(size_t)MAX_POSITIONS * {int(graph.types[c].shape[1])}" for c in caches]
    writes = "\n".join(f"        fwrite(arena + {plan[o]}, sizeof(float), (size_t)({_count_expr(graph, o)}), out);"
                       for o in graph.outputs)
    n_caches = max(len(caches), 1)
    return generate_c(graph, mr=mr) + f"""
/* ---- stand-alone runner (see canao/compiler/codegen/runner.py) ---- */
#include <stdio.h>
#include <stdlib.h>

static void *read_all(const char *path, long *bytes) {{
    FILE *f = fopen(path, "rb");
    if (!f) {{ perror(path); exit(2); }}
    fseek(f, 0, SEEK_END);
    *bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = aligned_alloc(64, (size_t)((*bytes + 63) / 64 * 64));
    if (!buf || fread(buf, 1, (size_t)*bytes, f) != (size_t)*bytes) {{ fprintf(stderr, "short read %s\\n", path); exit(2); }}
    fclose(f);
    return buf;
}}

int main(int argc, char **argv) {{
    if (argc != 4) {{ fprintf(stderr, "usage: %s weights.bin calls.bin outputs.bin\\n", argv[0]); return 2; }}
    long wbytes, cbytes;
    float *W = read_all(argv[1], &wbytes);
    if (wbytes != canao_weight_floats() * (long)sizeof(float)) {{ fprintf(stderr, "weight size mismatch\\n"); return 2; }}
    int32_t *calls = read_all(argv[2], &cbytes);
    float *arena = aligned_alloc(64, (size_t)canao_arena_floats() * sizeof(float) + 64);
    float *caches[{n_caches}] = {{0}};
    size_t cache_sizes[{n_caches}] = {{{', '.join(cache_sizes) or '0'}}};
    for (int i = 0; i < {len(caches)}; ++i) caches[i] = calloc(cache_sizes[i], sizeof(float));
    FILE *out = fopen(argv[3], "wb");
    if (!arena || !out) return 2;
    int32_t n_calls = calls[0], *p = calls + 1;
    for (int k = 0; k < n_calls; ++k) {{
        int T = p[0], past = p[1];
        const int32_t *ids = p + 2, *types = p + 2 + T;
        const float *mask = (const float *)(p + 2 + 2 * T);
        int rc = canao_forward(W, arena, ids, types, mask, caches, T, past, NULL);
        if (rc != 0) {{ fprintf(stderr, "canao_forward: %s\\n", canao_error_message(rc)); return 3; }}
{writes}
        p += 2 + 3 * T;
    }}
    fclose(out);
    for (int i = 0; i < {len(caches)}; ++i) free(caches[i]);
    free(arena); free(W); free(calls);
    return 0;
}}
"""


def write_calls(path: Path, calls: Sequence[Call]) -> None:
    parts = [np.array([len(calls)], dtype=np.int32)]
    for ids, types, mask, past in calls:
        parts += [np.array([len(ids), past], dtype=np.int32), np.asarray(ids, np.int32), np.asarray(types, np.int32),
                  np.asarray(mask, np.float32).view(np.int32)]
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
            row[name] = data[cursor:cursor + size].reshape(shape)
            cursor += size
        results.append(row)
    if cursor != data.size:
        raise ValueError(f"{path}: {data.size} floats, expected {cursor}.")
    return results
