/* A timing executable around one generated graph: the on-device half of latency profiling
 * (see canao/compiler/codegen/profiler.py and canao/latency/profile.py).
 *
 * It fills every input itself (pseudo-random ids below the vocabulary, zero
 * masks and caches, pseudo-random hidden states for block graphs), runs
 * `warmup` untimed calls and prints the wall time of each of `reps` calls in
 * milliseconds, one per line, measured with CLOCK_MONOTONIC around
 * canao_forward (no Python in the loop).
 *
 * Usage: prof weights.bin T past warmup reps
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "canao_model.h"

static double prof_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s weights.bin T past warmup reps\n", argv[0]);
        return 2;
    }
    long T = strtol(argv[2], NULL, 10), past = strtol(argv[3], NULL, 10);
    long warmup = strtol(argv[4], NULL, 10), reps = strtol(argv[5], NULL, 10);
    if (T < 1 || past < 0 || past > canao_max_positions() || T > canao_max_positions() - past || reps < 1 ||
        warmup < 0 || reps > 1000000 || warmup > 1000000) {
        fprintf(stderr, "bad T/past/warmup/reps\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    long nw = canao_weight_floats();
    float *W = aligned_alloc(64, (size_t)(nw + 16) * sizeof(float));
    if (!W || fread(W, sizeof(float), (size_t)nw, f) != (size_t)nw) {
        fprintf(stderr, "short weight file\n");
        return 2;
    }
    fclose(f);
    long hidden = canao_hidden_in_width() > 0 ? canao_hidden_in_width() : 1;
    unsigned vocab = (unsigned)canao_id_bound();
    float *arena = aligned_alloc(64, (size_t)(canao_arena_floats() + 16) * sizeof(float));
    int32_t *ids = calloc((size_t)T, sizeof(int32_t)), *types = calloc((size_t)T, sizeof(int32_t));
    float *mask = calloc((size_t)(past + T), sizeof(float));
    float *x = malloc((size_t)(T * hidden) * sizeof(float));
    int n_caches = canao_num_caches();
    float **caches = calloc((size_t)(n_caches > 0 ? n_caches : 1), sizeof(float *));
    if (!arena || !ids || !types || !mask || !x || !caches) return 2;
    for (int i = 0; i < n_caches; ++i)
        if (!(caches[i] = calloc((size_t)canao_cache_floats(i), sizeof(float)))) return 2;
    unsigned seed = 12345u;
    for (long t = 0; t < T; ++t) {
        seed = seed * 1103515245u + 12345u;
        ids[t] = (int32_t)((seed >> 8) % vocab);
    }
    for (long i = 0; i < T * hidden; ++i) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) % 2001u) / 1000.0f - 1.0f;
    }
    for (long r = 0; r < warmup + reps; ++r) {
        double t0 = prof_now_ms();
        int rc = canao_forward(W, arena, ids, types, mask, caches, (int)T, (int)past, x);
        double ms = prof_now_ms() - t0;
        if (rc != 0) {
            fprintf(stderr, "canao_forward: %s\n", canao_error_message(rc));
            return 3;
        }
        if (r >= warmup) printf("%.6f\n", ms);
    }
    for (int i = 0; i < n_caches; ++i) free(caches[i]);
    free(caches);
    free(W);
    free(arena);
    free(ids);
    free(types);
    free(mask);
    free(x);
    return 0;
}
