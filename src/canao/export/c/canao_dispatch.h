/* canao_dispatch.h: one generated model compiled for several SIMD levels, picked at run time.
 *
 * `canao export` compiles the model's C once per SIMD level of the target that runs the artifact's precision
 * with its own code (x86-64: AMX, AVX-512 with BF16/VNNI, AVX-512, AVX2; aarch64: NEON), each with its own
 * symbol prefix (canao_rename_<level>.h), and writes canao_levels.c: the table below, most capable level
 * first, with the CPUID bits each level needs (from canao.device.CPUID_BITS, the table canao's own runtime
 * reads as /proc/cpuinfo flags). canao_api.c, built without SIMD flags so that it runs on any CPU of the
 * target, takes the first level the CPU supports and weights.bin holds a section for (CANAO_SIMD in the
 * environment forces one): an int8 model runs VNNI code where the CPU has it, AVX2 code on an older one.
 */
#ifndef CANAO_DISPATCH_H
#define CANAO_DISPATCH_H

#include <stdint.h>

/* One CPUID feature bit: leaf/subleaf, register (0 eax, 1 ebx, 2 ecx, 3 edx), bit, and the XCR0 bits the OS
 * must have enabled for its register state (0 when none; AMX tile state is asked for by the kernels). */
typedef struct {
    unsigned leaf, subleaf;
    int reg, bit;
    unsigned xcr0;
} canao_cpuid_bit;

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
    const canao_cpuid_bit *cpu_needs; /* x86: every bit must be set; NULL: the architecture's baseline (NEON) */
    int n_cpu_needs;
    /* The weights.bin section this level reads, by its SIMD field and graph hash: its own, or that of a level
     * whose packed weights are byte-identical (AVX-512 with VNNI reads AVX-512's int8 panels), written once. */
    const char *section;
    const char *section_hash;
} canao_level;

extern const canao_level canao_levels[];
extern const int canao_n_levels;

#endif
