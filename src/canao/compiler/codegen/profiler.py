"""A timing executable around a generated graph: the on-device half of latency profiling.

The profiler of canao.latency runs it, locally or on another device through
a command template, and reads one time per line. It fills every input
itself (random ids below the vocabulary, zero masks and caches, random hidden
states), runs `warmup` untimed calls and prints the wall time of each of
`reps` calls in milliseconds, measured with CLOCK_MONOTONIC around
canao_forward (no Python in the loop).

Usage of the executable: prof WEIGHTS.bin T PAST WARMUP REPS

Example::

    source = generate_profiler(final_graph)
"""

from __future__ import annotations

from canao.compiler.codegen.c import _id_bounds, generate_c
from canao.compiler.ir import Graph


def generate_profiler(graph: Graph) -> str:
    caches = [n for n in graph.inputs if n.startswith("cache_")]
    cache_floats = [f"(size_t)MAX_POSITIONS * {int(graph.types[c].shape[1])}" for c in caches]
    vocab = _id_bounds(graph).get("input_ids", 1)
    hidden = int(graph.types["hidden_in"].shape[1]) if "hidden_in" in graph.types else 1
    n_caches = max(len(caches), 1)
    return "#define _POSIX_C_SOURCE 200112L\n" + generate_c(graph) + f"""
/* ---- timing executable (see canao/compiler/codegen/profiler.py) ---- */
#include <stdio.h>
#include <time.h>

static double prof_now_ms(void) {{ struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec * 1e-6; }}

int main(int argc, char **argv) {{
    if (argc != 6) {{ fprintf(stderr, "usage: %s weights.bin T past warmup reps\\n", argv[0]); return 2; }}
    int T = atoi(argv[2]), past = atoi(argv[3]), warmup = atoi(argv[4]), reps = atoi(argv[5]);
    if (T < 1 || past < 0 || past + T > MAX_POSITIONS || reps < 1) {{ fprintf(stderr, "bad T/past/reps\\n"); return 2; }}
    FILE *f = fopen(argv[1], "rb");
    if (!f) {{ perror(argv[1]); return 2; }}
    long nw = canao_weight_floats();
    float *W = aligned_alloc(64, (size_t)(nw + 16) * sizeof(float));
    if (!W || fread(W, sizeof(float), (size_t)nw, f) != (size_t)nw) {{ fprintf(stderr, "short weight file\\n"); return 2; }}
    fclose(f);
    float *arena = aligned_alloc(64, (size_t)(canao_arena_floats() + 16) * sizeof(float));
    int32_t *ids = calloc((size_t)T, sizeof(int32_t)), *types = calloc((size_t)T, sizeof(int32_t));
    float *mask = calloc((size_t)(past + T), sizeof(float));
    float *x = malloc((size_t)T * {hidden} * sizeof(float));
    float *caches[{n_caches}] = {{0}};
    size_t cache_floats[{n_caches}] = {{{', '.join(cache_floats) or '0'}}};
    if (!arena || !ids || !types || !mask || !x) return 2;
    for (int i = 0; i < {len(caches)}; ++i) if (!(caches[i] = calloc(cache_floats[i], sizeof(float)))) return 2;
    unsigned seed = 12345u;
    for (int t = 0; t < T; ++t) {{ seed = seed * 1103515245u + 12345u; ids[t] = (int32_t)((seed >> 8) % {vocab}u); }}
    for (long i = 0; i < (long)T * {hidden}; ++i) {{ seed = seed * 1103515245u + 12345u; x[i] = (float)((seed >> 8) % 2001u) / 1000.0f - 1.0f; }}
    for (int r = 0; r < warmup + reps; ++r) {{
        double t0 = prof_now_ms();
        int rc = canao_forward(W, arena, ids, types, mask, caches, T, past, x);
        double ms = prof_now_ms() - t0;
        if (rc != 0) {{ fprintf(stderr, "canao_forward: %s\\n", canao_error_message(rc)); return 3; }}
        if (r >= warmup) printf("%.6f\\n", ms);
    }}
    for (int i = 0; i < {len(caches)}; ++i) free(caches[i]);
    free(W); free(arena); free(ids); free(types); free(mask); free(x);
    return 0;
}}
"""

