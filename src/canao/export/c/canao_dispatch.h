/* canao_dispatch.h: one generated model compiled for several SIMD levels, picked at run time.
 *
 * `canao export` compiles the model's C once per SIMD level of the target (x86-64: AVX-512 and AVX2), each
 * with its own symbol prefix (canao_rename_<level>.h), and writes canao_levels.c: the table below, most
 * capable level first. canao_api.c, built without SIMD flags so that it runs on any CPU of the target,
 * takes the first level the CPU supports and weights.bin holds a section for (CANAO_SIMD in the environment
 * forces one), so a server with AVX-512 runs the AVX-512 code and an older one the AVX2 code.
 */
#ifndef CANAO_DISPATCH_H
#define CANAO_DISPATCH_H

#include <stdint.h>

typedef struct {
    const char *name; /* canao.device SIMD level: "avx512", "avx2", "neon", "scalar" */
    int (*forward)(const float *W, float *arena, const int32_t *ids, const int32_t *type_ids, const float *mask,
                   float *const *caches, int T, int past, const float *x);
    const char *(*error_message)(int code);
    int (*abi_version)(void);
    long (*arena_floats)(void);
    long (*weight_floats)(void);
    const char *(*graph_hash)(void);
    void (*set_threads)(int n);
    int (*max_positions)(void);
    int (*num_caches)(void);
    long (*cache_floats)(int i);
    int (*num_outputs)(void);
    long (*output_offset)(int i);
    long (*output_floats)(int i, int T, int past);
    int (*id_bound)(void);
} canao_level;

extern const canao_level canao_levels[];
extern const int canao_n_levels;

#endif
