/* The auto-tuner's native micro-benchmarks (see canao/compiler/tune.py), built from the same kernels as the
 * models: one GEMM variant on synthetic data, and the peak rate of the GEMM inner operation.
 *
 * Compiled as a shared library with the target's SIMD flags and -DCANAO_DEFAULT_MR; `precision` is the
 * code of canao.compiler.layout.LAYOUTS: 0 fp32, 1 bf16, 2 int8.
 */
#define _POSIX_C_SOURCE 200112L
#include <time.h>

#include "canao_kernels.h"

double canao_bench_gemm(int mr, int kc, int M, int N, int K, int reps, int threads, int precision);
double canao_bench_peak_gflops(int threads, int precision);

static double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *bench_alloc(size_t floats) { return aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64); }

/* Synthetic panels of `rows` words per column: fp32 values near 0.01, bf16 pairs near 0.01, or small int8
 * quads followed by each panel's row of column scales (0.01) and row of column sums. Realistic scales matter:
 * quad bytes read as floats are ~2e-38, whose products with the row scales are denormal and cost a microcode
 * assist per multiply (the int8 GEMMs then timed 5x slow). */
static void bench_fill_weights(float *W, size_t panels, size_t rows, int precision) {
    for (size_t i = 0; i < panels * rows * NR; ++i) {
        size_t row = i / NR % rows;
        if (precision == 1) {
            uint32_t pair = 0x3c233c23u + (uint32_t)(i % 7) * 0x00010001u;
            memcpy(W + i, &pair, sizeof pair);
        } else if (precision == 2 && row == rows - 2) {
            W[i] = 0.01f;
        } else if (precision == 2 && row == rows - 1) {
            int32_t sum = 100;
            memcpy(W + i, &sum, sizeof sum);
        } else if (precision == 2) {
            uint32_t quad = 0x01020304u + (uint32_t)(i % 7);
            memcpy(W + i, &quad, sizeof quad);
        } else {
            W[i] = (float)(i % 7) * 0.01f;
        }
    }
}

/* Best-of-3 mean time (ms) of `reps` GEMMs of one variant; -1 if memory runs out. */
double canao_bench_gemm(int mr, int kc, int M, int N, int K, int reps, int threads, int precision) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    int panels = (N + NR - 1) / NR;
    size_t rows = precision == 1 ? (size_t)(K + 1) / 2 : precision == 2 ? (size_t)(K + 3) / 4 + 2 : (size_t)K;
    size_t w_words = (size_t)panels * NR * rows;
    float *A = bench_alloc((size_t)M * K), *W = bench_alloc(w_words), *C = bench_alloc((size_t)M * N);
    float *bias = bench_alloc((size_t)N);
    double best = 1e30;
    if (!A || !W || !C || !bias) {
        best = -1.0;
        goto done;
    }
    for (long i = 0; i < (long)M * K; ++i) A[i] = (float)(i % 13) * 0.01f;
    bench_fill_weights(W, (size_t)panels, rows, precision);
    for (int i = 0; i < N; ++i) bias[i] = 0.5f;
    Epilogue e = {{EPI_BIAS, EPI_END}, bias, NULL, 0, 1.0f, NULL, NULL, 0.0f};
    for (int trial = -1; trial < 3; ++trial) { /* trial -1 warms up */
        double t0 = bench_now();
        for (int r = 0; r < (trial < 0 ? 1 : reps); ++r) {
            if (precision == 1) gemm_packed_bf16(A, K, W, K, N, C, N, M, &e, mr, kc);
            else if (precision == 2) gemm_packed_i8(A, K, W, K, N, C, N, M, &e, mr, kc);
            else gemm_packed(A, K, W, K, N, C, N, M, &e, mr, kc);
        }
        double ms = (bench_now() - t0) * 1e3 / reps;
        if (trial >= 0) best = ms < best ? ms : best;
    }
done:
    free(A);
    free(W);
    free(C);
    free(bias);
    return best;
}

/* Measured peak (G(FL)OP/s, all threads) of the GEMM inner operation in registers, independent chains:
 * fp32 FMA, the bf16 pair dot product (2 multiply-adds per lane) or the int8 quad dot product (4). */
double canao_bench_peak_gflops(int threads, int precision) {
    int bf16 = precision == 1, int8 = precision == 2;
    double total = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
#else
    (void)threads;
#endif
    {
        vf acc[12];
        for (int i = 0; i < 12; ++i) acc[i] = vbroadcast(0.001f * (float)i);
        const vf b = vbroadcast(0.999999f), c = vbroadcast(1e-7f);
        uint32_t bits[VL];
        for (int i = 0; i < VL; ++i) bits[i] = 0x3f7f3f7fu; /* two bf16 0.996 */
        const bf16_b pair = bf16_load_b(bits);
        const uint32_t a_pair = 0x33d633d6u; /* two bf16 ~1e-7 */
        const long iters = 20000000L;
        int tiles = 0; /* the peak was measured on AMX tiles */
        double t0 = bench_now();
#if CANAO_AMX_INT8
        /* with AMX the GEMMs run on tiles: the peak is that of the tile products (4 independent accumulators) */
        if ((bf16 || int8) && amx_usable()) {
            static const uint32_t zeros[16 * 16];
            const long tile_iters = 1000000L;
            amx_configure();
            _tile_loadd(4, zeros, 64);
            _tile_loadd(6, zeros, 64);
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            t0 = bench_now();
            for (long it = 0; it < tile_iters; ++it) {
                if (bf16) {
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 6);
                    _tile_dpbf16ps(2, 4, 6);
                    _tile_dpbf16ps(3, 4, 6);
                } else {
                    _tile_dpbusd(0, 4, 6);
                    _tile_dpbusd(1, 4, 6);
                    _tile_dpbusd(2, 4, 6);
                    _tile_dpbusd(3, 4, 6);
                }
            }
            double seconds = bench_now() - t0;
            _tile_release();
            total += (double)tile_iters * 4 * 16 * 16 * (bf16 ? 32 : 64) * 2 / seconds / 1e9;
            tiles = 1;
        } else
#endif
        if (bf16) {
            for (long it = 0; it < iters; ++it) {
                _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) acc[i] = bf16_dot(acc[i], a_pair, pair);
            }
        } else if (int8) {
            vi iacc[12];
            for (int i = 0; i < 12; ++i) iacc[i] = (vi){0} + i;
            const i8_b quads = i8_load_b(bits);
            for (long it = 0; it < iters; ++it) {
                _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) iacc[i] = i8_dot(iacc[i], 0x01010101u, quads);
            }
            for (int i = 0; i < 12; ++i) acc[i] = __builtin_convertvector(iacc[i], vf);
        } else {
            for (long it = 0; it < iters; ++it) {
                _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) acc[i] = acc[i] * b + c;
            }
        }
        double seconds = bench_now() - t0;
        float sink = 0.0f;
        for (int i = 0; i < 12; ++i) sink += acc[i][0];
        if (!tiles)
            total += (double)iters * 12 * VL * (int8 ? 8 : bf16 ? 4 : 2) / seconds / 1e9 + (sink == 12345.0f ? 1e-9 : 0.0);
    }
    return total;
}
