/* A stand-alone runner around one generated model (see canao/compiler/codegen/runner.py).
 *
 * The in-process path loads the model as a shared library; this program links
 * the same generated C with a main() that reads the weight blob and a file of
 * calls and writes the outputs, so the model can run under qemu-aarch64 (the
 * phone CPU's NEON path) or as an AddressSanitizer/UBSan build.
 *
 * Usage: runner weights.bin calls.bin outputs.bin
 * Calls file (little-endian): int32 n_calls, then per call int32 T, int32 past,
 * int32 ids[T], int32 type_ids[T], float32 mask[T]. Output file: per call,
 * each graph output's floats in order.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>

#include "canao_model.h"

static void *read_all(const char *path, long *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    *bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = aligned_alloc(64, (size_t)((*bytes + 63) / 64 * 64));
    if (!buf || fread(buf, 1, (size_t)*bytes, f) != (size_t)*bytes) {
        fprintf(stderr, "short read %s\n", path);
        exit(2);
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s weights.bin calls.bin outputs.bin\n", argv[0]);
        return 2;
    }
    long wbytes, cbytes;
    float *W = read_all(argv[1], &wbytes);
    if (wbytes != canao_weight_floats() * (long)sizeof(float)) {
        fprintf(stderr, "weight size mismatch\n");
        return 2;
    }
    int32_t *calls = read_all(argv[2], &cbytes);
    float *arena = aligned_alloc(64, (size_t)canao_arena_floats() * sizeof(float) + 64);
    int n_caches = canao_num_caches();
    float **caches = calloc((size_t)(n_caches > 0 ? n_caches : 1), sizeof(float *));
    FILE *out = fopen(argv[3], "wb");
    if (!arena || !caches || !out) return 2;
    for (int i = 0; i < n_caches; ++i)
        if (!(caches[i] = calloc((size_t)canao_cache_floats(i), sizeof(float)))) return 2;
    int32_t n_calls = calls[0], *p = calls + 1;
    for (int k = 0; k < n_calls; ++k) {
        int T = p[0], past = p[1];
        const int32_t *ids = p + 2, *types = p + 2 + T;
        const float *mask = (const float *)(p + 2 + 2 * T);
        int rc = canao_forward(W, arena, ids, types, mask, caches, T, past, NULL);
        if (rc != 0) {
            fprintf(stderr, "canao_forward: %s\n", canao_error_message(rc));
            return 3;
        }
        for (int o = 0; o < canao_num_outputs(); ++o)
            fwrite(arena + canao_output_offset(o), sizeof(float), (size_t)canao_output_floats(o, T, past), out);
        p += 2 + 3 * T;
    }
    fclose(out);
    for (int i = 0; i < n_caches; ++i) free(caches[i]);
    free(caches);
    free(arena);
    free(W);
    free(calls);
    return 0;
}
