/* canao kernels: the hand-written part of every generated model.
 *
 * Portable SIMD through GCC/Clang vector extensions: one source compiles to
 * AVX-512 (16 lanes), AVX2+FMA (8 lanes) or NEON (4 lanes) depending on the
 * target flags the runtime picks from the CPU's features. The generated
 * model code (one function per fused IR op) calls these kernels with
 * constant shapes.
 *
 * GEMM: C[M,N] = A[M,K] * W^T with W pre-packed in panels of NR = 2*VL
 * output columns (see canao/compiler/layout.py); an MR x NR register tile is
 * accumulated over K, then the LP-Fusion epilogue (bias, residual, GELU,
 * tanh, scale) is applied to the tile before it is stored. The same tiles
 * exist for bf16 operands (vdpbf16ps with AVX-512 BF16) and for int8
 * (vpdpbusd with AVX-512 VNNI), each with a portable widening fallback; a few
 * x86 intrinsics are used only under the matching target macros.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
static inline int canao_team_size(void) { return omp_get_num_threads(); }
static inline int canao_team_rank(void) { return omp_get_thread_num(); }
static inline int canao_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int canao_team_size(void) { return 1; }
static inline int canao_team_rank(void) { return 0; }
static inline int canao_max_threads(void) { return 1; }
#endif

/* The tile height of an untuned GEMM comes from canao.device.SIMD_LEVELS: the generated model (or the
 * compiler's -D flag for the tuning harness) defines it; every MR the table lists is instantiated below. */
#ifndef CANAO_DEFAULT_MR
#error "define CANAO_DEFAULT_MR (canao.device.SIMD_LEVELS) before including canao_kernels.h"
#endif
#define CANAO_CAT_(a, b) a##b
#define CANAO_CAT(a, b) CANAO_CAT_(a, b)

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX2__)
#define VL 8
#else
#define VL 4 /* NEON on aarch64, SSE on x86-64 */
#endif
#define NR (2 * VL)

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* A real broadcast: `(vf){0} + x` made GCC emit a scalar add of zero and a register-to-vector shuffle per value,
 * and on Intel cores that shuffle takes the port of the second FMA unit: the fp32 GEMM ran at 46% of the FMA
 * peak on a Sapphire Rapids Xeon (92% on Zen 4). A broadcast from memory folds into the FMA or the load ports. */
#if defined(__AVX512F__) && VL == 16
#include <immintrin.h>
static inline vf vbroadcast(float x) { return (vf)_mm512_set1_ps(x); }
#elif defined(__AVX2__) && VL == 8
#include <immintrin.h>
static inline vf vbroadcast(float x) { return (vf)_mm256_set1_ps(x); }
#else
static inline vf vbroadcast(float x) {
    vf v;
    for (int i = 0; i < VL; ++i) v[i] = x;
    return v;
}
#endif
/* The first len (<= VL) floats at p, zeros after: a plain vector load when len == VL. */
static inline vf vload_partial(const float *p, int len) {
    if (len == VL) return vload(p);
    vf v = {0};
    for (int i = 0; i < len; ++i) v[i] = p[i];
    return v;
}
/* Lane-wise select: mask lanes are all ones (true) or zero, as vector comparisons give. */
static inline vf vselect(vi mask, vf if_true, vf if_false) {
    return (vf)((mask & (vi)if_true) | (~mask & (vi)if_false));
}
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
/* Lane-wise max/min: one instruction where the ISA has it (a compare and a blend otherwise). */
static inline vf vmax(vf a, vf b) {
#if defined(__AVX512F__)
    return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX2__)
    return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#else
    return vselect(a > b, a, b);
#endif
}
static inline vf vmin(vf a, vf b) {
#if defined(__AVX512F__)
    return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX2__)
    return (vf)_mm256_min_ps((__m256)a, (__m256)b);
#else
    return vselect(a < b, a, b);
#endif
}
static inline float vsum(vf v) {
    float s = 0.0f;
    for (int i = 0; i < VL; ++i) s += v[i];
    return s;
}

/* exp(x): Cody-Waite range reduction x = n ln2 + r, degree-6 polynomial for
 * e^r on |r| <= ln2/2 (Cephes expf coefficients), scale by 2^n through the
 * exponent bits. Relative error ~2 ulp; inputs clamped to [-87.3, 88.3].
 * Rounding x/ln2 to the nearest integer n adds 1.5 * 2^23 + 127: the sum's
 * low mantissa bits are then n + 127, which shifted left by 23 are the
 * exponent field of 2^n (no float/int conversions on the critical path). */
static inline vf vexp(vf x) {
    const float shifter = 12582912.0f + 127.0f;
    x = vmin(vmax(x, vbroadcast(-87.3f)), vbroadcast(88.3f));
    vf t = x * 1.44269504088896341f + shifter;
    vf n = t - shifter;
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = vbroadcast(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi bits;
    memcpy(&bits, &t, sizeof bits);
    bits <<= 23;
    vf scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1), exact at the saturated ends. */
static inline vf vtanh(vf x) { return 1.0f - 2.0f / (vexp(2.0f * x) + 1.0f); }

/* erf(x): Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7. */
static inline vf verf(vf x) {
    vi negative = x < 0;
    vf ax = vselect(negative, -x, x);
    vf t = 1.0f / (1.0f + 0.3275911f * ax);
    vf y = vbroadcast(1.061405429f);
    y = y * t - 1.453152027f;
    y = y * t + 1.421413741f;
    y = y * t - 0.284496736f;
    y = y * t + 0.254829592f;
    y = 1.0f - y * t * vexp(-ax * ax);
    return vselect(negative, -y, y);
}

static inline vf vgelu_erf(vf x) { return 0.5f * x * (1.0f + verf(x * 0.70710678118654752f)); }
static inline vf vgelu_tanh(vf x) {
    return 0.5f * x * (1.0f + vtanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

/* ---------------------------------------------------------------- epilogue */
enum { EPI_END = 0, EPI_BIAS, EPI_RESIDUAL, EPI_GELU, EPI_GELU_TANH, EPI_TANH, EPI_SCALE };
#define EPI_MAX 6

typedef struct {
    int steps[EPI_MAX];           /* EPI_* codes in order, EPI_END-terminated */
    const float *bias;            /* [N] */
    const float *residual;        /* [M, ld_residual] */
    int ld_residual;
    float scale;
    /* Optional LayerNorm of each finished row of C, in place (norm_gamma NULL: none): after all the steps above,
     * so it is not one of them -- it needs the whole row. See gemm_norm_rows. */
    const float *norm_gamma, *norm_beta; /* [N] */
    float norm_eps;
} Epilogue;

/* Apply the epilogue to `len` (<= VL) columns starting at column n of row m. */
static inline vf epilogue_apply(const Epilogue *e, vf v, int m, int n, int len) {
    for (int s = 0; s < EPI_MAX && e->steps[s] != EPI_END; ++s) {
        switch (e->steps[s]) {
        case EPI_BIAS: v += vload_partial(e->bias + n, len); break;
        case EPI_RESIDUAL: v += vload_partial(e->residual + (size_t)m * e->ld_residual + n, len); break;
        case EPI_GELU: v = vgelu_erf(v); break;
        case EPI_GELU_TANH: v = vgelu_tanh(v); break;
        case EPI_TANH: v = vtanh(v); break;
        case EPI_SCALE: v *= e->scale; break;
        default: break;
        }
    }
    return v;
}

/* One row: yr = LayerNorm(xr + rr) (rr may be NULL; yr may be xr). */
static inline void layer_norm_row(const float *xr, const float *rr, const float *g, const float *b, float *yr, int H,
                                  float eps) {
    vf acc = {0};
    int i = 0;
    for (; i + VL <= H; i += VL) {
        vf v = rr ? vload(xr + i) + vload(rr + i) : vload(xr + i);
        vstore(yr + i, v);
        acc += v;
    }
    float sum = vsum(acc);
    for (; i < H; ++i) { float v = xr[i] + (rr ? rr[i] : 0.0f); yr[i] = v; sum += v; }
    const float mean = sum / (float)H;
    vf sq = {0};
    for (i = 0; i + VL <= H; i += VL) { vf d = vload(yr + i) - mean; sq += d * d; }
    float var = vsum(sq);
    for (; i < H; ++i) { float d = yr[i] - mean; var += d * d; }
    const float inv = 1.0f / sqrtf(var / (float)H + eps);
    for (i = 0; i + VL <= H; i += VL) vstore(yr + i, (vload(yr + i) - mean) * inv * vload(g + i) + vload(b + i));
    for (; i < H; ++i) yr[i] = (yr[i] - mean) * inv * g[i] + b[i];
}

static inline void add_layer_norm(const float *x, const float *r, const float *g, const float *b,
                                  float *y, int M, int H, float eps) {
#pragma omp parallel for schedule(static) if (M * H > 65536)
    for (int m = 0; m < M; ++m)
        layer_norm_row(x + (size_t)m * H, r ? r + (size_t)m * H : NULL, g, b, y + (size_t)m * H, H, eps);
}

/* The epilogue's LayerNorm over rows r0..r1-1 of C (N columns), in place, by the calling thread. */
static inline void gemm_norm_rows(float *C, int ldc, int r0, int r1, int N, const Epilogue *e) {
    for (int m = r0; m < r1; ++m)
        layer_norm_row(C + (size_t)m * ldc, NULL, e->norm_gamma, e->norm_beta, C + (size_t)m * ldc, N, e->norm_eps);
}

/* The same over all M rows, split over the threads: for GEMMs whose threads do not own whole rows (a panel
 * split), this is the separate pass the fusion saves elsewhere. */
static inline void gemm_norm_all_rows(float *C, int ldc, int M, int N, const Epilogue *e) {
    if (!e->norm_gamma) return;
#pragma omp parallel for schedule(static) if ((long)M * N > 65536)
    for (int m = 0; m < M; ++m) gemm_norm_rows(C, ldc, m, m + 1, N, e);
}

/* ------------------------------------------------------------------- GEMM */
/* Variants the auto-tuner chooses from per shape: the register tile height MR
 * (4, 6, 8 or 12 rows x NR columns; 8 and 12 want AVX-512's 32 registers)
 * and the K block KC (0 = all of K at once; otherwise partial sums of KC
 * steps go through C and the epilogue runs after the last block). */

/* Store an accumulated tile row through the epilogue (last K block) or as a partial sum. */
static inline void gemm_store(float *C, int ldc, int m, int n, int N, vf acc, const Epilogue *e, int first, int last) {
    int len = N - n < VL ? N - n : VL;
    if (len <= 0) return;
    float *c = C + (size_t)m * ldc + n;
    if (!first) acc += vload_partial(c, len);
    vf v = last ? epilogue_apply(e, acc, m, n, len) : acc;
    if (len == VL) vstore(c, v);
    else memcpy(c, &v, (size_t)len * sizeof(float));
}

/* The last rows (fewer than MR) of a panel, one row at a time. */
static inline void gemm_tile_rows(const float *A, int lda, const float *panel, int k0, int k1, float *C, int ldc,
                                  int m0, int rows, int n0, int N, const Epilogue *e, int first, int last) {
    for (int r = 0; r < rows; ++r) {
        vf acc0 = {0}, acc1 = {0};
        const float *a = A + (size_t)(m0 + r) * lda;
        for (int k = k0; k < k1; ++k) {
            vf ar = vbroadcast(a[k]);
            acc0 += ar * vload(panel + (size_t)k * NR);
            acc1 += ar * vload(panel + (size_t)k * NR + VL);
        }
        gemm_store(C, ldc, m0 + r, n0, N, acc0, e, first, last);
        gemm_store(C, ldc, m0 + r, n0 + VL, N, acc1, e, first, last);
    }
}

/* Which split the vector GEMMs take: row bands (each thread a contiguous band of row blocks, every panel over
 * it) need 2 row blocks a thread and weights (all panels) of at most GEMM_BAND_MAX_WEIGHT_BYTES; otherwise the
 * (panel, row block) pairs are split (each thread about half the panels over every row). Why: with bands, a
 * thread reads only rows of A that it wrote itself in the GEMM before (the row-split LayerNorm leaves them in
 * its own cache; under the panel split half of every row comes from the other core's), its C rows stay in its
 * cache for the next op, and the epilogue's LayerNorm runs in the same region; but both threads then read all
 * the weights, which loses where the weights stream from memory. Measured on the AMX Xeon (fp32, 2 threads,
 * whole models, spinning / passive wait, against the panel split everywhere): MiniLM (GEMM weights <= 2.4 MB)
 * at 128 tokens -5% / -8%, at 384 -6% / -5%; BERT-base (2.4-9.4 MB) with bands for every GEMM at 128 tokens
 * +16% / -1%, at 384 +1% / -2% (hence the weight limit). */
#ifndef GEMM_BAND_MAX_WEIGHT_BYTES
#define GEMM_BAND_MAX_WEIGHT_BYTES (4u << 20)
#endif
static inline int gemm_banded(int row_blocks, size_t weight_bytes) {
    return row_blocks >= 2 * canao_max_threads() && weight_bytes <= GEMM_BAND_MAX_WEIGHT_BYTES;
}

/* The loop every vector GEMM precision shares, then the epilogue's LayerNorm (if any). Row bands (see
 * gemm_banded): one region; per panel, the K blocks (KC steps; 0 = all), each over the thread's row blocks; then
 * the thread's rows normalised. Otherwise K blocks outside; inside, the (panel, row block) pairs split statically
 * over the threads; then the LayerNorm as a separate row-split pass. Each row block is a register tile of MRV rows
 * (TILE) or, at the bottom, the last rows one at a time (TILE_ROWS). K_STEPS counts the kernel's K steps (K,
 * pairs, quads), PANEL_WORDS one panel's size; the trailing arguments are the A operand the tiles take. */
/* Row block rb of panel p over K steps k0..k1-1: a register tile of MRV rows, or the last rows one at a time. */
#define GEMM_ROW_BLOCK(MRV, rb, p, panel, k0, k1, first, last, TILE, TILE_ROWS, ...)                            \
    do {                                                                                                        \
        int m0 = (rb) * MRV, rows = M - m0 < MRV ? M - m0 : MRV;                                                \
        if (rows == MRV) TILE(__VA_ARGS__, panel, k0, k1, C, ldc, m0, (p) * NR, N, e, first, last);             \
        else TILE_ROWS(__VA_ARGS__, panel, k0, k1, C, ldc, m0, rows, (p) * NR, N, e, first, last);              \
    } while (0)

#define GEMM_PANEL_LOOP(MRV, K, K_STEPS, KC, WP, PANEL_WORDS, TILE, TILE_ROWS, ...)                                 \
    do {                                                                                                        \
        int panels = (N + NR - 1) / NR, row_blocks = (M + MRV - 1) / MRV;                                       \
        int step = (KC) > 0 && (KC) < (K_STEPS) ? (KC) : (K_STEPS);                                            \
        if (gemm_banded(row_blocks, (size_t)panels * (PANEL_WORDS) * 4)) {                                      \
            _Pragma("omp parallel if ((long)M * N * (K) > 32768)") {                                            \
                int teams_ = canao_team_size(), rank_ = canao_team_rank();                                      \
                int rb0_ = row_blocks * rank_ / teams_, rb1_ = row_blocks * (rank_ + 1) / teams_;               \
                for (int p = 0; p < panels; ++p) {                                                              \
                    const void *panel = (const char *)(WP) + (size_t)p * (PANEL_WORDS) * 4;                     \
                    for (int k0 = 0; k0 < (K_STEPS); k0 += step) {                                              \
                        int k1 = k0 + step < (K_STEPS) ? k0 + step : (K_STEPS);                                 \
                        int first = k0 == 0, last = k1 == (K_STEPS);                                            \
                        for (int rb = rb0_; rb < rb1_; ++rb)                                                    \
                            GEMM_ROW_BLOCK(MRV, rb, p, panel, k0, k1, first, last, TILE, TILE_ROWS, __VA_ARGS__);  \
                    }                                                                                           \
                }                                                                                               \
                if (e->norm_gamma) gemm_norm_rows(C, ldc, rb0_ * MRV, rb1_ * MRV < M ? rb1_ * MRV : M, N, e);   \
            }                                                                                                   \
            break;                                                                                              \
        }                                                                                                       \
        for (int k0 = 0; k0 < (K_STEPS); k0 += step) {                                                          \
            int k1 = k0 + step < (K_STEPS) ? k0 + step : (K_STEPS), first = k0 == 0, last = k1 == (K_STEPS);     \
            _Pragma("omp parallel for collapse(2) schedule(static) if ((long)M * N * (K) > 32768)")             \
            for (int p = 0; p < panels; ++p) {                                                                  \
                for (int rb = 0; rb < row_blocks; ++rb) {                                                       \
                    const void *panel = (const char *)(WP) + (size_t)p * (PANEL_WORDS) * 4;                     \
                    GEMM_ROW_BLOCK(MRV, rb, p, panel, k0, k1, first, last, TILE, TILE_ROWS, __VA_ARGS__);      \
                }                                                                                               \
            }                                                                                                   \
        }                                                                                                       \
        gemm_norm_all_rows(C, ldc, M, N, e);                                                                    \
    } while (0)

#define DEFINE_GEMM(MRV)                                                                                       \
    static inline void gemm_tile_##MRV(const float *A, int lda, const float *panel, int k0, int k1, float *C,   \
                                       int ldc, int m0, int n0, int N, const Epilogue *e, int first, int last) { \
        vf acc0[MRV], acc1[MRV];                                                                               \
        for (int r = 0; r < MRV; ++r) { acc0[r] = (vf){0}; acc1[r] = (vf){0}; }                                 \
        const float *a = A + (size_t)m0 * lda;                                                                 \
        for (int k = k0; k < k1; ++k) {                                                                        \
            vf b0 = vload(panel + (size_t)k * NR), b1 = vload(panel + (size_t)k * NR + VL);                    \
            _Pragma("GCC unroll 16") for (int r = 0; r < MRV; ++r) {                                           \
                vf ar = vbroadcast(a[(size_t)r * lda + k]);                                                    \
                acc0[r] += ar * b0;                                                                            \
                acc1[r] += ar * b1;                                                                            \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < MRV; ++r) {                                                                        \
            gemm_store(C, ldc, m0 + r, n0, N, acc0[r], e, first, last);                                        \
            gemm_store(C, ldc, m0 + r, n0 + VL, N, acc1[r], e, first, last);                                   \
        }                                                                                                      \
    }                                                                                                          \
    /* C[M,N] = epilogue(A[M,K] x W^T), W packed as ceil(N/NR) panels of K x NR. */                            \
    static inline void gemm_packed_mr##MRV(const float *A, int lda, const float *Wp, int K, int N, float *C,   \
                                           int ldc, int M, const Epilogue *e, int kc) {                        \
        GEMM_PANEL_LOOP(MRV, K, K, kc, Wp, (size_t)K * NR, gemm_tile_##MRV, gemm_tile_rows, A, lda);          \
    }

DEFINE_GEMM(4)
DEFINE_GEMM(6)
DEFINE_GEMM(8)
DEFINE_GEMM(12)

/* Dispatch on the tuned tile height. */
static inline void gemm_packed(const float *A, int lda, const float *Wp, int K, int N, float *C, int ldc, int M,
                               const Epilogue *e, int mr, int kc) {
    switch (mr) {
    case 4: gemm_packed_mr4(A, lda, Wp, K, N, C, ldc, M, e, kc); break;
    case 8: gemm_packed_mr8(A, lda, Wp, K, N, C, ldc, M, e, kc); break;
    case 12: gemm_packed_mr12(A, lda, Wp, K, N, C, ldc, M, e, kc); break;
    case 6: gemm_packed_mr6(A, lda, Wp, K, N, C, ldc, M, e, kc); break;
    default: CANAO_CAT(gemm_packed_mr, CANAO_DEFAULT_MR)(A, lda, Wp, K, N, C, ldc, M, e, kc); break;
    }
}

/* -------------------------------------------------------------- bf16 GEMM */
/* The same tiles over bf16 operands with fp32 accumulators (see layout.py,
 * "bf16panel<NR>"): W packed as ceil(N/NR) panels of ceil(K/2) x NR 32-bit
 * words, each a bf16 pair (k even in the low half, k odd in the high half).
 * A is rounded to bf16 pairs once per call (round to nearest even) into a
 * heap buffer, row-major [M, ceil(K/2)] words. With AVX-512 BF16 one
 * vdpbf16ps adds both products of a pair per lane (twice the fp32 FMA rate);
 * elsewhere a shift and a mask widen each half to fp32 for ordinary FMAs, so
 * every CPU computes the same rounded operands. */
typedef uint32_t vu __attribute__((vector_size(VL * sizeof(uint32_t))));
typedef uint16_t vh __attribute__((vector_size(VL * sizeof(uint16_t))));

static inline vu vload_u(const uint32_t *p) { vu v; memcpy(&v, p, sizeof v); return v; }
static inline uint16_t bf16_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* A[M, K] (row stride lda) -> bf16 rows of ld2 words (ld2 >= ceil(K/2)), zero-padded to an even K. */
static inline void rows_to_bf16(const float *A, int lda, int M, int K, uint32_t *out, int ld2) {
    for (int m = 0; m < M; ++m) {
        const float *a = A + (size_t)m * lda;
        uint16_t *o = (uint16_t *)(out + (size_t)m * ld2);
        int k = 0;
        for (; k + VL <= K; k += VL) {
            vu u;
            memcpy(&u, a + k, sizeof u);
            vh h = __builtin_convertvector((u + 0x7fffu + ((u >> 16) & 1u)) >> 16, vh);
            memcpy(o + k, &h, sizeof h);
        }
        for (; k < K; ++k) o[k] = bf16_of(a[k]);
        if (K & 1) o[K] = 0;
    }
}

#if defined(__AVX512BF16__) && VL == 16
typedef vu bf16_b;
static inline bf16_b bf16_load_b(const uint32_t *p) { return vload_u(p); }
static inline vf bf16_dot(vf acc, uint32_t a_pair, bf16_b b) {
    return (vf)_mm512_dpbf16_ps((__m512)acc, (__m512bh)_mm512_set1_epi32((int)a_pair), (__m512bh)b);
}
#else
typedef struct { vf even, odd; } bf16_b;
static inline bf16_b bf16_load_b(const uint32_t *p) {
    vu w = vload_u(p);
    bf16_b b;
    vu even = w << 16, odd = w & 0xffff0000u;
    memcpy(&b.even, &even, sizeof even);
    memcpy(&b.odd, &odd, sizeof odd);
    return b;
}
static inline vf bf16_dot(vf acc, uint32_t a_pair, bf16_b b) {
    uint32_t even_bits = a_pair << 16, odd_bits = a_pair & 0xffff0000u;
    float even, odd;
    memcpy(&even, &even_bits, sizeof even);
    memcpy(&odd, &odd_bits, sizeof odd);
    return acc + vbroadcast(even) * b.even + vbroadcast(odd) * b.odd;
}
#endif

/* The last rows (fewer than MR) of a bf16 panel; k0, k1 count pairs. */
static inline void gemm_bf16_tile_rows(const uint32_t *A2, int lda2, const uint32_t *panel, int k0, int k1, float *C,
                                       int ldc, int m0, int rows, int n0, int N, const Epilogue *e, int first, int last) {
    for (int r = 0; r < rows; ++r) {
        vf acc0 = {0}, acc1 = {0};
        const uint32_t *a = A2 + (size_t)(m0 + r) * lda2;
        for (int k = k0; k < k1; ++k) {
            acc0 = bf16_dot(acc0, a[k], bf16_load_b(panel + (size_t)k * NR));
            acc1 = bf16_dot(acc1, a[k], bf16_load_b(panel + (size_t)k * NR + VL));
        }
        gemm_store(C, ldc, m0 + r, n0, N, acc0, e, first, last);
        gemm_store(C, ldc, m0 + r, n0 + VL, N, acc1, e, first, last);
    }
}

#define DEFINE_GEMM_BF16(MRV)                                                                                  \
    static inline void gemm_bf16_tile_##MRV(const uint32_t *A2, int lda2, const uint32_t *panel, int k0, int k1, \
                                            float *C, int ldc, int m0, int n0, int N, const Epilogue *e, int first, \
                                            int last) {                                                        \
        vf acc0[MRV], acc1[MRV];                                                                               \
        for (int r = 0; r < MRV; ++r) { acc0[r] = (vf){0}; acc1[r] = (vf){0}; }                                 \
        const uint32_t *a = A2 + (size_t)m0 * lda2;                                                            \
        for (int k = k0; k < k1; ++k) {                                                                        \
            bf16_b b0 = bf16_load_b(panel + (size_t)k * NR), b1 = bf16_load_b(panel + (size_t)k * NR + VL);    \
            _Pragma("GCC unroll 16") for (int r = 0; r < MRV; ++r) {                                           \
                uint32_t ap = a[(size_t)r * lda2 + k];                                                         \
                acc0[r] = bf16_dot(acc0[r], ap, b0);                                                           \
                acc1[r] = bf16_dot(acc1[r], ap, b1);                                                           \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < MRV; ++r) {                                                                        \
            gemm_store(C, ldc, m0 + r, n0, N, acc0[r], e, first, last);                                        \
            gemm_store(C, ldc, m0 + r, n0 + VL, N, acc1[r], e, first, last);                                   \
        }                                                                                                      \
    }                                                                                                          \
    static inline void gemm_bf16_mr##MRV(const uint32_t *A2, int K2, const uint32_t *Wp, int K, int N, float *C, \
                                         int ldc, int M, const Epilogue *e, int kc2) {                         \
        GEMM_PANEL_LOOP(MRV, K, K2, kc2, Wp, (size_t)K2 * NR, gemm_bf16_tile_##MRV, gemm_bf16_tile_rows, A2, K2); \
    }

DEFINE_GEMM_BF16(4)
DEFINE_GEMM_BF16(6)
DEFINE_GEMM_BF16(8)
DEFINE_GEMM_BF16(12)

#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && defined(__AVX512BF16__) && VL == 16
/* AMX (Sapphire Rapids and later): the tile unit multiplies a 16 x 32 bf16 tile of A by a 16-pair x 16
 * column tile of B into a 16 x 16 fp32 tile in one instruction (16x the vdpbf16ps work). The operands need no
 * new layout: a bf16 panel row (k pair, NR = 32 columns of 32-bit pair words) is exactly AMX's pair-interleaved
 * B layout, so a panel is two B tiles side by side (row stride NR words), and the bf16 rows of A are A tiles
 * (row stride K2 words). A 32 x 32 block of C keeps 4 accumulator tiles (tmm0-3), 2 A tiles (tmm4-5) and
 * 2 B tiles (tmm6-7); pairs past the last multiple of 16 and rows past the last multiple of 32 go through the
 * vector kernel above (same rounded operands, fp32 sums). Linux hands out the tile state only on request
 * (arch_prctl); where that is refused, the vector kernel runs instead. */
#include <sys/syscall.h>
long syscall(long number, ...); /* unistd.h declares it only outside strict C11 */
#define AMX_MR 32
#define AMX_KP 16 /* k pairs per tile */
/* The row-band GEMMs run K in parts of AMX_KB steps (pairs, quads) when K has at most AMX_KB_MAX_STEPS: each
 * part's panel slice (16 KB) then stays in L1 while the band's blocks use it, and the blocks' sums wait in a
 * per-thread scratch between parts. Why: a whole panel (K = 384: 24 KB) and a block's rows of A (24 KB) fill
 * L1 together and evict each other; measured on the AMX Xeon (2 threads, 384 rows) -8..-12% time at K = 384,
 * -3..-7% at K = 1536, and up to -12% at K = 768 with N = 3072; longer rows (bf16 K = 3072) ran 10% slower in
 * parts (short runs of each row of A for the prefetchers), so they keep one part. */
#ifndef AMX_KB
#define AMX_KB 128
#endif
#define AMX_KB_MAX_STEPS 768
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} AmxTileConfig;

static int amx_permission; /* 0: not asked yet, 1: granted, -1: refused */
static inline int amx_usable(void) {
    int state = __atomic_load_n(&amx_permission, __ATOMIC_ACQUIRE);
    if (state == 0) {
        /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18); asking again is harmless */
        state = syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : -1;
        __atomic_store_n(&amx_permission, state, __ATOMIC_RELEASE);
    }
    return state > 0;
}

/* Tile configuration is per thread and other libraries in the process (oneDNN) set their own: every parallel
 * region configures on entry and releases on exit. All 8 tiles: 16 rows of 64 bytes. */
static inline void amx_configure(void) {
    AmxTileConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; ++t) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
}

/* acc[32][NR] (4-byte sums) = 32 rows of A (from `a`, `steps` words a row) x one panel over its steps k0..k1-1
 * (multiples of 16 words: pairs or quads), on tiles, added to `init` (NULL: zeros; else a 32 x NR block of
 * earlier sums, which may be `acc` itself); DOT is _tile_dpbf16ps (bf16) or _tile_dpbusd (int8). */
#define AMX_BLOCK_PART(DOT, a, steps, k0, k1, panel, init, acc)                                                \
    do {                                                                                                      \
        const size_t a_stride_ = (size_t)(steps) * 4, b_stride_ = NR * 4;                                     \
        if (init) {                                                                                           \
            _tile_loadd(0, &(init)[0][0], NR * 4);                                                            \
            _tile_loadd(1, &(init)[0][16], NR * 4);                                                           \
            _tile_loadd(2, &(init)[16][0], NR * 4);                                                           \
            _tile_loadd(3, &(init)[16][16], NR * 4);                                                          \
        } else {                                                                                              \
            _tile_zero(0);                                                                                    \
            _tile_zero(1);                                                                                    \
            _tile_zero(2);                                                                                    \
            _tile_zero(3);                                                                                    \
        }                                                                                                     \
        for (int k_ = (k0); k_ < (k1); k_ += AMX_KP) {                                                        \
            _tile_loadd(4, (a) + k_, a_stride_);                                                              \
            _tile_loadd(5, (a) + (size_t)16 * (steps) + k_, a_stride_);                                       \
            _tile_loadd(6, (panel) + (size_t)k_ * NR, b_stride_);                                             \
            _tile_loadd(7, (panel) + (size_t)k_ * NR + 16, b_stride_);                                        \
            DOT(0, 4, 6);                                                                                     \
            DOT(1, 4, 7);                                                                                     \
            DOT(2, 5, 6);                                                                                     \
            DOT(3, 5, 7);                                                                                     \
        }                                                                                                     \
        _tile_stored(0, &(acc)[0][0], NR * 4);                                                                \
        _tile_stored(1, &(acc)[0][16], NR * 4);                                                               \
        _tile_stored(2, &(acc)[16][0], NR * 4);                                                               \
        _tile_stored(3, &(acc)[16][16], NR * 4);                                                              \
    } while (0)

/* C rows m0..m0+31, panel columns n0..n0+31, pairs k0..k1-1 (multiples of 16 but the end): added to the 32 x NR
 * sums in `sums` (k0 = 0: none) and left there, or, for the part that reaches the last whole tile of pairs, the
 * rest pairs added and stored through the epilogue. */
static inline void gemm_bf16_amx_part(const uint32_t *A2, int K2, const uint32_t *panel, float *C, int ldc, int m0,
                                      int n0, int N, const Epilogue *e, int k0, int k1, float (*sums)[NR]) {
    float acc[AMX_MR][NR] __attribute__((aligned(64)));
    const uint32_t *a = A2 + (size_t)m0 * K2;
    int kfull = K2 / AMX_KP * AMX_KP, last = k1 >= kfull;
    AMX_BLOCK_PART(_tile_dpbf16ps, a, K2, k0, last ? kfull : k1, panel, k0 > 0 ? sums : NULL, last ? acc : sums);
    if (!last) return;
    for (int r = 0; r < AMX_MR; ++r) {
        vf acc0 = vload(acc[r]), acc1 = vload(acc[r] + VL);
        const uint32_t *ar = a + (size_t)r * K2;
        for (int k = kfull; k < K2; ++k) {
            acc0 = bf16_dot(acc0, ar[k], bf16_load_b(panel + (size_t)k * NR));
            acc1 = bf16_dot(acc1, ar[k], bf16_load_b(panel + (size_t)k * NR + VL));
        }
        gemm_store(C, ldc, m0 + r, n0, N, acc0, e, 1, 1);
        gemm_store(C, ldc, m0 + r, n0 + VL, N, acc1, e, 1, 1);
    }
}

/* The sums of a thread's `blocks` 32-row blocks kept between K parts: a scratch with *kb = AMX_KB when K runs in
 * parts, else NULL and *kb = steps (one part: K short or long, see AMX_KB, or no memory for the scratch). */
typedef float AmxSums[AMX_MR][NR];
static inline AmxSums *amx_part_sums(int steps, int blocks, int *kb) {
    AmxSums *sums = steps > AMX_KB && steps <= AMX_KB_MAX_STEPS ? aligned_alloc(64, (size_t)(blocks + 1) * sizeof *sums)
                                                              : NULL;
    *kb = sums ? AMX_KB : steps;
    return sums;
}

/* Panel p over blocks b0..b1-1 (their sums: sums[rb - b0]), K in parts of kb steps up to the part that reaches
 * the last whole tile (PART adds the rest steps and stores through the epilogue there). */
#define AMX_PANEL_PARTS(PART, PANEL_WORDS, p, b0, b1, kb, steps, sums, ...)                                       \
    for (int k0_ = 0;; k0_ += (kb)) {                                                                           \
        for (int rb = (b0); rb < (b1); ++rb)                                                                    \
            PART(__VA_ARGS__, Wp + (size_t)(p) * (PANEL_WORDS), C, ldc, rb * AMX_MR, (p) * NR, N, e, k0_, k0_ + (kb), \
                 (sums) ? (sums)[rb - (b0)] : NULL);                                                            \
        if (k0_ + (kb) >= (steps) / AMX_KP * AMX_KP) break;                                                     \
    }

/* Spin until all `teams` threads of the region have arrived at the counter `*arrived` (which starts at 0);
 * release/acquire order publishes what each wrote before arriving. After a short spin it yields the core, so
 * that an oversubscribed machine (another process on the cores) lets the late thread run. */
int sched_yield(void); /* sched.h declares it only outside strict C11 */
static inline void amx_team_wait(int *arrived, int teams) {
    __atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL);
    for (int spins = 0; __atomic_load_n(arrived, __ATOMIC_ACQUIRE) < teams; ++spins) {
        if (spins < (1 << 16)) __builtin_ia32_pause();
        else sched_yield();
    }
}

/* The panel split both AMX GEMMs use for few rows: one parallel region in which each thread converts a share
 * of A's rows (CONVERT(r0, r1): rows r0..r1-1 into the low-precision copy), waits for the other threads' rows
 * (a barrier), then runs its own contiguous run of panels over every 32-row block (K in parts as in the band
 * split below: PART over K_STEPS, PANEL_WORDS a panel's size) and the rows past the last block (TILE_ROWS);
 * then, after a second barrier, the epilogue's LayerNorm over its share of rows. Why: each thread reads only
 * its half of the weights, which at few rows (BERT-base at 128 tokens: 170 MB of bf16 weights a call for
 * 4 blocks of rows) is what the call waits for; and everything stays in one region (a conversion before it or
 * a LayerNorm after it would each cost a thread wake-up where threads sleep between regions). The barriers
 * spin (amx_team_wait) rather than sleep: both threads are awake inside the region and wait only for the
 * other's share of a short pass, while an OpenMP barrier under OMP_WAIT_POLICY=passive puts the first thread
 * to sleep and adds a wake-up (measured on BERT-base bf16 at 128 tokens: +1.5 ms a call). The trailing
 * arguments are the A operand the kernels take. */
#define AMX_PANEL_LOOP(CONVERT, K_STEPS, PANEL_WORDS, PART, TILE_ROWS, ...)                                      \
    do {                                                                                                      \
        int panels = (N + NR - 1) / NR, blocks = M / AMX_MR, tail = M - blocks * AMX_MR;                       \
        long work_ = (long)M * N * (K_STEPS); /* a _Pragma string cannot name a macro argument */             \
        int converted_ = 0, computed_ = 0; /* threads past the conversion, past the product */               \
        _Pragma("omp parallel if (work_ > 16384)") {                                                          \
            int teams_ = canao_team_size(), rank_ = canao_team_rank();                                        \
            int kb_, steps_ = (K_STEPS);                                                                      \
            AmxSums *sums_ = amx_part_sums(steps_, blocks, &kb_);                                             \
            CONVERT(M * rank_ / teams_, M * (rank_ + 1) / teams_);                                            \
            amx_team_wait(&converted_, teams_);                                                               \
            int p0_ = panels * rank_ / teams_, p1_ = panels * (rank_ + 1) / teams_;                           \
            amx_configure();                                                                                  \
            for (int p = p0_; p < p1_; ++p)                                                                   \
                AMX_PANEL_PARTS(PART, PANEL_WORDS, p, 0, blocks, kb_, steps_, sums_, __VA_ARGS__);            \
            _tile_release();                                                                                  \
            free(sums_);                                                                                      \
            if (tail > 0)                                                                                     \
                for (int p = p0_; p < p1_; ++p)                                                               \
                    TILE_ROWS(__VA_ARGS__, Wp + (size_t)p * (PANEL_WORDS), 0, (K_STEPS), C, ldc, blocks * AMX_MR, \
                              tail, p * NR, N, e, 1, 1);                                                      \
            if (e->norm_gamma) {                                                                              \
                amx_team_wait(&computed_, teams_);                                                            \
                gemm_norm_rows(C, ldc, M * rank_ / teams_, M * (rank_ + 1) / teams_, N, e);                   \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)

/* The other split, for 2 or more 32-row blocks a thread: each thread owns a band of whole blocks (the last one
 * also the rows past them), converts its own rows of A (CONVERT(r0, r1): rows r0..r1-1 into the low-precision
 * copy), then runs every panel over its band, panel by panel so that a panel is read once from the shared
 * cache and stays in the thread's own while the band's blocks use it. Why: the conversion is then parallel and
 * needs no barrier, and every row of C, of its residual and of the converted A stays in one core's cache --
 * the row-split LayerNorm after it and the next GEMM's conversion read it there, with no barrier. The panel
 * split above leaves each core half of every row and needs a barrier after the conversion; it wins only where
 * the weights, not the rows, are what the call streams (see amx_banded). */
#define AMX_BAND_LOOP(CONVERT, K_STEPS, PANEL_WORDS, PART, TILE_ROWS, ...)                                       \
    do {                                                                                                      \
        int panels = (N + NR - 1) / NR, blocks = M / AMX_MR;                                                  \
        _Pragma("omp parallel") {                                                                             \
            int teams_ = canao_team_size(), rank_ = canao_team_rank();                                        \
            int b0_ = blocks * rank_ / teams_, b1_ = blocks * (rank_ + 1) / teams_;                            \
            int r1_ = rank_ == teams_ - 1 ? M : b1_ * AMX_MR;                                                 \
            int kb_, steps_ = (K_STEPS);                                                                      \
            AmxSums *sums_ = amx_part_sums(steps_, b1_ - b0_, &kb_);                                          \
            CONVERT(b0_ * AMX_MR, r1_);                                                                       \
            amx_configure();                                                                                  \
            for (int p = 0; p < panels; ++p)                                                                  \
                AMX_PANEL_PARTS(PART, PANEL_WORDS, p, b0_, b1_, kb_, steps_, sums_, __VA_ARGS__);             \
            _tile_release();                                                                                  \
            free(sums_);                                                                                      \
            if (r1_ > b1_ * AMX_MR)                                                                           \
                for (int p = 0; p < panels; ++p)                                                              \
                    TILE_ROWS(__VA_ARGS__, Wp + (size_t)p * (PANEL_WORDS), 0, (K_STEPS), C, ldc, b1_ * AMX_MR,  \
                              r1_ - b1_ * AMX_MR, p * NR, N, e, 1, 1);                                        \
            if (e->norm_gamma) gemm_norm_rows(C, ldc, b0_ * AMX_MR, r1_, N, e); /* its own rows, still warm */ \
        }                                                                                                     \
    } while (0)

/* Which split: bands need 2 blocks a thread; at 2 a thread (128 rows on 2 threads) they still win where the
 * weights come from the shared cache, but where a GEMM's weights exceed a core's L2 (2 MB on the AMX CPUs so
 * far) they come from memory, both threads streaming all of them, and the panel split (half each) wins. From 3
 * blocks a thread the rows dominate and bands win. Measured on the AMX Xeon, 2 threads, whole models, spinning
 * / passive wait: BERT-base at 128 tokens (GEMM weights 1.2-4.7 MB) all-panel bf16 -16% / -3%, int8 -8% / +1%;
 * MiniLM at 128 (<= 1.2 MB) all-panel bf16 +18% / -1%; BERT-base at 384 (6 blocks a thread) bf16 +3% / +5%. */
#ifndef AMX_L2_BYTES
#define AMX_L2_BYTES (2u << 20)
#endif
static inline int amx_banded(int M, size_t weight_bytes) {
    int per_thread = M / AMX_MR / canao_max_threads();
    return per_thread >= 3 || (per_thread == 2 && weight_bytes <= AMX_L2_BYTES);
}

/* bf16(A) x panels on tiles; A2 is the (uninitialised) bf16 copy of A, filled here. */
static inline void gemm_bf16_amx(const float *A, int lda, int K, uint32_t *A2, int K2, const uint32_t *Wp, int N,
                                 float *C, int ldc, int M, const Epilogue *e) {
#define AMX_ROWS_TO_BF16(r0, r1) rows_to_bf16(A + (size_t)(r0) * lda, lda, (r1) - (r0), K, A2 + (size_t)(r0) * K2, K2)
    if (amx_banded(M, (size_t)(N + NR - 1) / NR * K2 * NR * 4)) {
        AMX_BAND_LOOP(AMX_ROWS_TO_BF16, K2, (size_t)K2 * NR, gemm_bf16_amx_part, gemm_bf16_tile_rows, A2, K2);
    } else {
        AMX_PANEL_LOOP(AMX_ROWS_TO_BF16, K2, (size_t)K2 * NR, gemm_bf16_amx_part, gemm_bf16_tile_rows, A2, K2);
    }
#undef AMX_ROWS_TO_BF16
}
#define CANAO_AMX_BF16 1
#else
#define CANAO_AMX_BF16 0
#endif

/* C[M,N] = epilogue(bf16(A[M,K]) x W^T), W in bf16 pair panels; kc counts K steps (rounded to pairs).
 * With AMX (32 rows or more) the tile kernel runs and mr, kc do not apply.
 * Returns 0, or 4 when the bf16 copy of A cannot be allocated (C is then untouched). */
static inline int gemm_packed_bf16(const float *A, int lda, const void *Wp, int K, int N, float *C, int ldc, int M,
                                   const Epilogue *e, int mr, int kc) {
    int K2 = (K + 1) / 2, kc2 = (kc + 1) / 2;
    uint32_t *A2 = malloc((size_t)M * K2 * sizeof(uint32_t) + 64);
    if (!A2) return 4;
    const uint32_t *W = (const uint32_t *)Wp;
#if CANAO_AMX_BF16
    if (M >= AMX_MR && amx_usable()) {
        gemm_bf16_amx(A, lda, K, A2, K2, W, N, C, ldc, M, e);
        free(A2);
        return 0;
    }
#endif
    rows_to_bf16(A, lda, M, K, A2, K2);
    switch (mr) {
    case 4: gemm_bf16_mr4(A2, K2, W, K, N, C, ldc, M, e, kc2); break;
    case 8: gemm_bf16_mr8(A2, K2, W, K, N, C, ldc, M, e, kc2); break;
    case 12: gemm_bf16_mr12(A2, K2, W, K, N, C, ldc, M, e, kc2); break;
    case 6: gemm_bf16_mr6(A2, K2, W, K, N, C, ldc, M, e, kc2); break;
    default: CANAO_CAT(gemm_bf16_mr, CANAO_DEFAULT_MR)(A2, K2, W, K, N, C, ldc, M, e, kc2); break;
    }
    free(A2);
    return 0;
}

/* -------------------------------------------------------------- int8 GEMM */
/* Dynamic quantization: W per output column symmetric int8 (layout.py, "i8panel<NR>": ceil(K/4)
 * rows of 4-byte quads, then a row of column scales and a row of column sums per panel); each A row
 * is quantized when the GEMM runs to uint8 with its own scale and zero point, so
 *   C[m, n] = sa[m] * sw[n] * (qa[m] . qw[n] - za[m] * sum_k qw[n, k])   (int32 dot products).
 * AVX-512 VNNI's vpdpbusd adds 4 u8 x s8 products per int32 lane (4x the fp32 FMA rate); elsewhere
 * the bytes are widened to int32 lanes and multiplied (correct, not fast: use fp32 or bf16 there). */
typedef uint8_t vb __attribute__((vector_size(VL)));

/* A[M, K] -> uint8 rows of ld4 words (quads, zero-padded) with per-row scale and zero point. */
static inline void rows_to_u8(const float *A, int lda, int M, int K, uint32_t *out, int ld4, float *scale,
                              int32_t *zero) {
    const float shifter = 12582912.0f; /* adding and removing 1.5 * 2^23 rounds to nearest even */
    for (int m = 0; m < M; ++m) {
        const float *a = A + (size_t)m * lda;
        vf lo_v = vbroadcast(0.0f), hi_v = vbroadcast(0.0f);
        int k = 0;
        for (; k + VL <= K; k += VL) {
            vf x = vload(a + k);
            lo_v = vmin(lo_v, x);
            hi_v = vmax(hi_v, x);
        }
        float lo = 0.0f, hi = 0.0f;
        for (int l = 0; l < VL; ++l) {
            lo = lo_v[l] < lo ? lo_v[l] : lo;
            hi = hi_v[l] > hi ? hi_v[l] : hi;
        }
        for (; k < K; ++k) {
            lo = a[k] < lo ? a[k] : lo;
            hi = a[k] > hi ? a[k] : hi;
        }
        float span = hi - lo < 1e-30f ? 255.0f : hi - lo, inv = 255.0f / span;
        float zp = (-lo * inv + shifter) - shifter;
        zp = zp < 0.0f ? 0.0f : (zp > 255.0f ? 255.0f : zp);
        scale[m] = span / 255.0f;
        zero[m] = (int32_t)zp;
        uint8_t *o = (uint8_t *)(out + (size_t)m * ld4);
        for (k = 0; k + VL <= K; k += VL) {
            vf q = (vload(a + k) * inv + shifter) - shifter + zp;
            q = vmin(vmax(q, vbroadcast(0.0f)), vbroadcast(255.0f));
            vb bytes = __builtin_convertvector(__builtin_convertvector(q, vi), vb);
            memcpy(o + k, &bytes, sizeof bytes);
        }
        for (; k < K; ++k) {
            float q = (a[k] * inv + shifter) - shifter + zp;
            o[k] = (uint8_t)(q < 0.0f ? 0.0f : (q > 255.0f ? 255.0f : q));
        }
        for (; k < ld4 * 4; ++k) o[k] = 0;
    }
}

#if defined(__AVX512VNNI__) && VL == 16
typedef vu i8_b;
static inline i8_b i8_load_b(const uint32_t *p) { return vload_u(p); }
static inline vi i8_dot(vi acc, uint32_t a_quad, i8_b b) {
    return (vi)_mm512_dpbusd_epi32((__m512i)acc, _mm512_set1_epi32((int)a_quad), (__m512i)b);
}
#else
typedef struct { vi b0, b1, b2, b3; } i8_b;
static inline i8_b i8_load_b(const uint32_t *p) {
    vi w;
    memcpy(&w, p, sizeof w);
    i8_b b = {(w << 24) >> 24, (w << 16) >> 24, (w << 8) >> 24, w >> 24}; /* sign-extended bytes */
    return b;
}
static inline vi i8_dot(vi acc, uint32_t a_quad, i8_b b) {
    return acc + (int32_t)(a_quad & 0xffu) * b.b0 + (int32_t)((a_quad >> 8) & 0xffu) * b.b1
           + (int32_t)((a_quad >> 16) & 0xffu) * b.b2 + (int32_t)(a_quad >> 24) * b.b3;
}
#endif

/* Dequantize one vector of int32 sums (columns n.. of row m; the panel's scale and sum rows start at
 * column n - n0 of `qrow`) and store it like gemm_store: partial K blocks add up in C. */
static inline void gemm_store_i8(float *C, int ldc, int m, int n, int N, vi acc, const Epilogue *e, int first, int last,
                                 const uint32_t *qrow, float sa, int32_t za) {
    int len = N - n < VL ? N - n : VL;
    if (len <= 0) return;
    vf sw;
    vi sums;
    memcpy(&sw, qrow, sizeof sw);
    memcpy(&sums, qrow + NR, sizeof sums);
    vf v = __builtin_convertvector(last ? acc - za * sums : acc, vf) * (sw * sa);
    float *c = C + (size_t)m * ldc + n;
    if (!first) v += vload_partial(c, len);
    if (last) v = epilogue_apply(e, v, m, n, len);
    if (len == VL) vstore(c, v);
    else memcpy(c, &v, (size_t)len * sizeof(float));
}

typedef struct {
    const uint32_t *A4; /* quantized rows, K4 words each */
    const float *scale;
    const int32_t *zero;
    int K4;
} QuantRows;

/* The last rows (fewer than MR) of an int8 panel; k0, k1 count quads. */
static inline void gemm_i8_tile_rows(const QuantRows *a, const uint32_t *panel, int k0, int k1, float *C, int ldc,
                                     int m0, int rows, int n0, int N, const Epilogue *e, int first, int last) {
    const uint32_t *qrow = panel + (size_t)a->K4 * NR;
    for (int r = 0; r < rows; ++r) {
        vi acc0 = {0}, acc1 = {0};
        const uint32_t *q = a->A4 + (size_t)(m0 + r) * a->K4;
        for (int k = k0; k < k1; ++k) {
            acc0 = i8_dot(acc0, q[k], i8_load_b(panel + (size_t)k * NR));
            acc1 = i8_dot(acc1, q[k], i8_load_b(panel + (size_t)k * NR + VL));
        }
        int m = m0 + r;
        gemm_store_i8(C, ldc, m, n0, N, acc0, e, first, last, qrow, a->scale[m], a->zero[m]);
        gemm_store_i8(C, ldc, m, n0 + VL, N, acc1, e, first, last, qrow + VL, a->scale[m], a->zero[m]);
    }
}

#define DEFINE_GEMM_I8(MRV)                                                                                    \
    static inline void gemm_i8_tile_##MRV(const QuantRows *a, const uint32_t *panel, int k0, int k1, float *C,  \
                                          int ldc, int m0, int n0, int N, const Epilogue *e, int first, int last) { \
        vi acc0[MRV], acc1[MRV];                                                                               \
        for (int r = 0; r < MRV; ++r) { acc0[r] = (vi){0}; acc1[r] = (vi){0}; }                                 \
        const uint32_t *q = a->A4 + (size_t)m0 * a->K4;                                                        \
        for (int k = k0; k < k1; ++k) {                                                                        \
            i8_b b0 = i8_load_b(panel + (size_t)k * NR), b1 = i8_load_b(panel + (size_t)k * NR + VL);          \
            _Pragma("GCC unroll 16") for (int r = 0; r < MRV; ++r) {                                           \
                uint32_t quad = q[(size_t)r * a->K4 + k];                                                      \
                acc0[r] = i8_dot(acc0[r], quad, b0);                                                           \
                acc1[r] = i8_dot(acc1[r], quad, b1);                                                           \
            }                                                                                                  \
        }                                                                                                      \
        const uint32_t *qrow = panel + (size_t)a->K4 * NR;                                                     \
        for (int r = 0; r < MRV; ++r) {                                                                        \
            int m = m0 + r;                                                                                    \
            gemm_store_i8(C, ldc, m, n0, N, acc0[r], e, first, last, qrow, a->scale[m], a->zero[m]);           \
            gemm_store_i8(C, ldc, m, n0 + VL, N, acc1[r], e, first, last, qrow + VL, a->scale[m], a->zero[m]); \
        }                                                                                                      \
    }                                                                                                          \
    static inline void gemm_i8_mr##MRV(const QuantRows *a, const uint32_t *Wp, int K, int N, float *C, int ldc, \
                                       int M, const Epilogue *e, int kc4) {                                    \
        GEMM_PANEL_LOOP(MRV, K, a->K4, kc4, Wp, (size_t)(a->K4 + 2) * NR, gemm_i8_tile_##MRV, gemm_i8_tile_rows, a); \
    }

DEFINE_GEMM_I8(4)
DEFINE_GEMM_I8(6)
DEFINE_GEMM_I8(8)
DEFINE_GEMM_I8(12)

#if CANAO_AMX_BF16 && defined(__AMX_INT8__)
/* int8 on AMX tiles, as the bf16 tiles above: an i8 panel row (a quad of k, NR columns of 4-byte words) is AMX's
 * B layout for u8 x s8 products, the quantized rows of A are A tiles (16 quads a row), and tdpbusd adds
 * 16 x 16 x 64 products into int32 tiles. Quads past the last multiple of 16 and rows past the last multiple
 * of 32 use the vector kernel; the int32 sums are dequantized by the same store. */
static inline void gemm_i8_amx_part(const QuantRows *q, const uint32_t *panel, float *C, int ldc, int m0, int n0,
                                    int N, const Epilogue *e, int k0, int k1, float (*sums)[NR]) {
    int32_t acc[AMX_MR][NR] __attribute__((aligned(64)));
    int32_t(*part)[NR] = (int32_t(*)[NR])sums; /* int32 sums in the same scratch */
    const int K4 = q->K4;
    const uint32_t *a = q->A4 + (size_t)m0 * K4;
    int kfull = K4 / AMX_KP * AMX_KP, last = k1 >= kfull;
    AMX_BLOCK_PART(_tile_dpbusd, a, K4, k0, last ? kfull : k1, panel, k0 > 0 ? part : NULL, last ? acc : part);
    if (!last) return;
    const uint32_t *qrow = panel + (size_t)K4 * NR;
    for (int r = 0; r < AMX_MR; ++r) {
        vi acc0, acc1;
        memcpy(&acc0, acc[r], sizeof acc0);
        memcpy(&acc1, acc[r] + VL, sizeof acc1);
        const uint32_t *ar = a + (size_t)r * K4;
        for (int k = kfull; k < K4; ++k) {
            acc0 = i8_dot(acc0, ar[k], i8_load_b(panel + (size_t)k * NR));
            acc1 = i8_dot(acc1, ar[k], i8_load_b(panel + (size_t)k * NR + VL));
        }
        int m = m0 + r;
        gemm_store_i8(C, ldc, m, n0, N, acc0, e, 1, 1, qrow, q->scale[m], q->zero[m]);
        gemm_store_i8(C, ldc, m, n0 + VL, N, acc1, e, 1, 1, qrow + VL, q->scale[m], q->zero[m]);
    }
}

/* u8(A) x i8 panels on tiles; q's rows, scales and zero points are filled here from A. */
static inline void gemm_i8_amx(const float *A, int lda, int K, const QuantRows *q, const uint32_t *Wp, int N, float *C,
                               int ldc, int M, const Epilogue *e) {
    uint32_t *A4 = (uint32_t *)q->A4;
    float *scale = (float *)q->scale;
    int32_t *zero = (int32_t *)q->zero;
    const int K4 = q->K4;
#define AMX_ROWS_TO_U8(r0, r1)                                                                                 \
    rows_to_u8(A + (size_t)(r0) * lda, lda, (r1) - (r0), K, A4 + (size_t)(r0) * K4, K4, scale + (r0), zero + (r0))
    if (amx_banded(M, (size_t)(N + NR - 1) / NR * (K4 + 2) * NR * 4)) {
        AMX_BAND_LOOP(AMX_ROWS_TO_U8, K4, (size_t)(K4 + 2) * NR, gemm_i8_amx_part, gemm_i8_tile_rows, q);
    } else {
        AMX_PANEL_LOOP(AMX_ROWS_TO_U8, K4, (size_t)(K4 + 2) * NR, gemm_i8_amx_part, gemm_i8_tile_rows, q);
    }
#undef AMX_ROWS_TO_U8
}
#define CANAO_AMX_INT8 1
#else
#define CANAO_AMX_INT8 0
#endif

/* C[M,N] = epilogue(dequant(u8(A) x int8(W)^T)), W in i8 panels; kc counts K steps (rounded to quads).
 * With AMX (32 rows or more) the tile kernel runs and mr, kc do not apply.
 * Returns 0, or 4 when the quantized copy of A cannot be allocated (C is then untouched). */
static inline int gemm_packed_i8(const float *A, int lda, const void *Wp, int K, int N, float *C, int ldc, int M,
                                 const Epilogue *e, int mr, int kc) {
    int K4 = (K + 3) / 4, kc4 = (kc + 3) / 4;
    uint32_t *A4 = malloc(((size_t)M * K4 + 2 * (size_t)M) * sizeof(uint32_t) + 64);
    if (!A4) return 4;
    float *scale = (float *)(A4 + (size_t)M * K4);
    int32_t *zero = (int32_t *)(scale + M);
    const QuantRows a = {A4, scale, zero, K4};
    const uint32_t *W = (const uint32_t *)Wp;
#if CANAO_AMX_INT8
    if (M >= AMX_MR && amx_usable()) {
        gemm_i8_amx(A, lda, K, &a, W, N, C, ldc, M, e);
        free(A4);
        return 0;
    }
#endif
    rows_to_u8(A, lda, M, K, A4, K4, scale, zero);
    switch (mr) {
    case 4: gemm_i8_mr4(&a, W, K, N, C, ldc, M, e, kc4); break;
    case 8: gemm_i8_mr8(&a, W, K, N, C, ldc, M, e, kc4); break;
    case 12: gemm_i8_mr12(&a, W, K, N, C, ldc, M, e, kc4); break;
    case 6: gemm_i8_mr6(&a, W, K, N, C, ldc, M, e, kc4); break;
    default: CANAO_CAT(gemm_i8_mr, CANAO_DEFAULT_MR)(&a, W, K, N, C, ldc, M, e, kc4); break;
    }
    free(A4);
    return 0;
}

/* -------------------------------------------------------------- row ops */
static inline float dot(const float *a, const float *b, int n) {
    vf acc = {0};
    int i = 0;
    for (; i + VL <= n; i += VL) acc += vload(a + i) * vload(b + i);
    float s = vsum(acc);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

/* y = LayerNorm(x (+ r)) over rows of width H; r may be NULL. Two passes over
 * the row (mean, then variance of the centred values, which is exact enough in
 * float for rows of a few thousand), vectorised. */

/* Fused attention: out[T, heads*hd] = softmax(Q K^T + mask) V per head.
 * Q/K/V rows have strides ldq/ldk/ldv; causal: query t sees keys 0..past+t.
 * Per head, K_h is packed transposed (hd x Sp, zero-padded to whole vectors) so
 * that a block of ATT_RB query rows gets its scores against VL keys per FMA,
 * like a GEMM with K = hd; the softmax runs on those ATT_RB score rows
 * (vectorised exp) and P V is a second small GEMM with the V rows broadcast
 * into ATT_RB x 2 vector accumulators. Only ATT_RB rows of scores exist at a
 * time: no T x S matrix is written. Heads run in parallel. */
#if VL == 16
#define ATT_RB 8 /* AVX-512 has the registers for 8 x 2 accumulators */
#else
#define ATT_RB 4
#endif

#if ATT_RB == 8
#define ATT_EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#else
#define ATT_EACH_ROW(X) X(0) X(1) X(2) X(3)
#endif

/* The product both attention stages run on a full block of ATT_RB rows: acc0[r] / acc1[r] = sum over i < n of
 * A[r * lda + i] times B[i * ldb ...] (two vectors: VL columns each). Scores: A = the block's q rows, B = K^T at
 * key j; context: A = the block's exps, B = V at column d. Every accumulator is a named variable, and the
 * arrays are written once at the end: with the accumulators in arrays that the next step reads through a
 * pointer, GCC kept them in memory and stored each to the stack after every FMA (perf annotate), and the fp32
 * products ran at ~40% of the FMA peak. Rows of a partial block use the loops below. */
static inline void attention_block_product(const float *A, int lda, const float *B, int ldb, int n, vf *acc0,
                                           vf *acc1) {
#define ATT_DECLARE(r) vf a##r = {0}, b##r = {0};
#define ATT_STEP(r)                                                                                              \
    {                                                                                                            \
        vf s_ = vbroadcast(ai[(size_t)(r) * lda]);                                                               \
        a##r += s_ * x0;                                                                                         \
        b##r += s_ * x1;                                                                                         \
    }
#define ATT_OUT(r)                                                                                               \
    acc0[r] = a##r;                                                                                              \
    acc1[r] = b##r;
    ATT_EACH_ROW(ATT_DECLARE)
    for (int i = 0; i < n; ++i) {
        const float *ai = A + i, *bi = B + (size_t)i * ldb;
        vf x0 = vload(bi), x1 = vload(bi + VL);
        ATT_EACH_ROW(ATT_STEP)
    }
    ATT_EACH_ROW(ATT_OUT)
#undef ATT_DECLARE
#undef ATT_STEP
#undef ATT_OUT
}

/* Scores of ATT_RB query rows against keys j..j+2*VL-1 (two vectors per row: 2 KT loads feed 2*rows FMAs). */
static inline __attribute__((always_inline)) void attention_scores_pair(const float *Q, int ldq, const float *KT, int Sp,
                                                                        int j, int t0, int rows, int hd, vf *acc0,
                                                                        vf *acc1) {
    for (int r = 0; r < ATT_RB; ++r) { acc0[r] = (vf){0}; acc1[r] = (vf){0}; }
    for (int d = 0; d < hd; ++d) {
        vf k0 = vload(KT + (size_t)d * Sp + j), k1 = vload(KT + (size_t)d * Sp + j + VL);
        for (int r = 0; r < rows; ++r) {
            vf q = vbroadcast(Q[(size_t)(t0 + r) * ldq + d]);
            acc0[r] += q * k0;
            acc1[r] += q * k1;
        }
    }
}

/* The same from bf16 pairs along the head dimension: Q2 [rows][hd2] words, KT2 [hd2][Sp] words. */
static inline __attribute__((always_inline)) void attention_scores_pair_bf16(const uint32_t *Q2, int hd2,
                                                                             const uint32_t *KT2, int Sp, int j,
                                                                             int rows, vf *acc0, vf *acc1) {
    for (int r = 0; r < ATT_RB; ++r) { acc0[r] = (vf){0}; acc1[r] = (vf){0}; }
    for (int dd = 0; dd < hd2; ++dd) {
        bf16_b k0 = bf16_load_b(KT2 + (size_t)dd * Sp + j), k1 = bf16_load_b(KT2 + (size_t)dd * Sp + j + VL);
        for (int r = 0; r < rows; ++r) {
            uint32_t q = Q2[(size_t)r * hd2 + dd];
            acc0[r] = bf16_dot(acc0[r], q, k0);
            acc1[r] = bf16_dot(acc1[r], q, k1);
        }
    }
}

/* The largest lane. */
static inline float vmax_lanes(vf v) {
    float m = v[0];
    for (int l = 1; l < VL; ++l) m = v[l] > m ? v[l] : m;
    return m;
}

static inline void attention_store_scores(float *scores, int Sp, const float *mask_row, int j, int t0, int rows,
                                          int past, int causal, const vf *acc, vf *row_max) {
    vf lane = {0};
    for (int l = 0; l < VL; ++l) lane[l] = (float)l;
    vf m = vload(mask_row + j);
    for (int r = 0; r < rows; ++r) {
        vf v = acc[r] + m;
        if (causal) v = vselect(lane + (float)j < (float)(past + t0 + r + 1), v, vbroadcast(-INFINITY));
        vstore(scores + (size_t)r * Sp + j, v);
        row_max[r] = vmax(row_max[r], v);
    }
}

/* Per-head operands of one attention call. fp32: KT [hd][Sp] (V is read in place). bf16: KT2 [hd2][Sp]
 * and V2 [Sp/2][hdv] words (bf16 pairs along d, resp. along keys; hdv = hd rounded up to VL), Q2 [ATT_RB][hd2] and
 * P2 [ATT_RB][Sp/2] words for the current row block. Sp = S rounded up to 2*VL; padding is zero. */
typedef struct {
    const float *KT;
    uint32_t *KT2, *V2, *Q2, *P2;
    int Sp, hd, hd2, hdv, bf16;
} AttentionOperands;

/* Scores (+ mask) of rows t0.. into `scores`; each row's maximum into `maxima`. */
static inline void attention_scores_block(const AttentionOperands *o, const float *Q, int ldq, const float *mask_row,
                                          float *scores, float *maxima, int t0, int rows, int past, int causal) {
    const int Sp = o->Sp;
    int block_keys = causal ? past + t0 + rows : Sp; /* keys past this are masked for every row */
    vf acc0[ATT_RB], acc1[ATT_RB], row_max[ATT_RB];
    for (int r = 0; r < ATT_RB; ++r) row_max[r] = vbroadcast(-INFINITY);
    int j = 0;
    for (; j < Sp && j < block_keys; j += 2 * VL) { /* Sp is a multiple of 2 * VL */
        if (o->bf16) {
            if (rows == ATT_RB) attention_scores_pair_bf16(o->Q2, o->hd2, o->KT2, Sp, j, ATT_RB, acc0, acc1);
            else attention_scores_pair_bf16(o->Q2, o->hd2, o->KT2, Sp, j, rows, acc0, acc1);
        } else {
            if (rows == ATT_RB) attention_block_product(Q + (size_t)t0 * ldq, ldq, o->KT + j, Sp, o->hd, acc0, acc1);
            else attention_scores_pair(Q, ldq, o->KT, Sp, j, t0, rows, o->hd, acc0, acc1);
        }
        attention_store_scores(scores, Sp, mask_row, j, t0, rows, past, causal, acc0, row_max);
        attention_store_scores(scores, Sp, mask_row, j + VL, t0, rows, past, causal, acc1, row_max);
    }
    for (; j < Sp; j += VL)
        for (int r = 0; r < rows; ++r) vstore(scores + (size_t)r * Sp + j, vbroadcast(-INFINITY));
    for (int r = 0; r < rows; ++r) maxima[r] = vmax_lanes(row_max[r]);
}

/* exp(s - max) in place over the first `keys` scores of every row of the block (the context
 * product reads no further); masked scores are -inf and become ~0 (vexp clamps at e^-87).
 * The reciprocal of each row's sum goes to `inv_sum`; it scales the output, not P. */
static inline void attention_softmax_rows(float *scores, const float *maxima, float *inv_sum, int rows, int Sp,
                                          int keys) {
    int padded = (keys + VL - 1) / VL * VL;
    for (int r = 0; r < rows; ++r) {
        float *row = scores + (size_t)r * Sp;
        vf sum = {0};
        for (int j = 0; j < padded; j += VL) {
            vf e = vexp(vload(row + j) - maxima[r]);
            vstore(row + j, e);
            sum += e;
        }
        inv_sum[r] = 1.0f / vsum(sum);
    }
}

static inline __attribute__((always_inline)) void attention_context_block(const float *scores, const float *inv_sum,
                                                                          int Sp, const float *V, int ldv, float *out,
                                                                          int ldo, int t0, int rows, int keys, int hd) {
    int d = 0;
    for (; d + 2 * VL <= hd; d += 2 * VL) {
        vf acc0[ATT_RB] = {{0}}, acc1[ATT_RB] = {{0}};
        if (rows == ATT_RB) attention_block_product(scores, Sp, V + d, ldv, keys, acc0, acc1);
        else for (int j = 0; j < keys; ++j) {
            vf v0 = vload(V + (size_t)j * ldv + d), v1 = vload(V + (size_t)j * ldv + d + VL);
            for (int r = 0; r < rows; ++r) {
                float p = scores[(size_t)r * Sp + j];
                acc0[r] += p * v0;
                acc1[r] += p * v1;
            }
        }
        for (int r = 0; r < rows; ++r) {
            vstore(out + (size_t)(t0 + r) * ldo + d, acc0[r] * inv_sum[r]);
            vstore(out + (size_t)(t0 + r) * ldo + d + VL, acc1[r] * inv_sum[r]);
        }
    }
    for (; d + VL <= hd; d += VL) {
        vf acc[ATT_RB] = {{0}};
        for (int j = 0; j < keys; ++j) {
            vf v = vload(V + (size_t)j * ldv + d);
            for (int r = 0; r < rows; ++r) acc[r] += scores[(size_t)r * Sp + j] * v;
        }
        for (int r = 0; r < rows; ++r) vstore(out + (size_t)(t0 + r) * ldo + d, acc[r] * inv_sum[r]);
    }
    for (; d < hd; ++d) {
        for (int r = 0; r < rows; ++r) {
            float a = 0.0f;
            for (int j = 0; j < keys; ++j) a += scores[(size_t)r * Sp + j] * V[(size_t)j * ldv + d];
            out[(size_t)(t0 + r) * ldo + d] = a * inv_sum[r];
        }
    }
}

/* Store `len` (<= VL) lanes of a context row, scaled by the row's 1/sum. */
static inline void attention_store_out(float *out, vf acc, float inv_sum, int len) {
    vf v = acc * inv_sum;
    if (len == VL) vstore(out, v);
    else memcpy(out, &v, (size_t)len * sizeof(float));
}

/* The context product from bf16 pairs along the keys: P2 [rows][Sp/2] words (the block's exps), V2. */
static inline __attribute__((always_inline)) void attention_context_block_bf16(const AttentionOperands *o,
                                                                               const float *inv_sum, float *out,
                                                                               int ldo, int t0, int rows, int keys) {
    const int pairs = (keys + 1) / 2, Sp2 = o->Sp / 2, hdv = o->hdv, hd = o->hd;
    for (int d = 0; d < hdv; d += 2 * VL) {
        int two = d + 2 * VL <= hdv; /* hdv is a multiple of VL: a last single vector may be left */
        vf acc0[ATT_RB] = {{0}}, acc1[ATT_RB] = {{0}};
        for (int jj = 0; jj < pairs; ++jj) {
            const uint32_t *v = o->V2 + (size_t)jj * hdv + d;
            bf16_b v0 = bf16_load_b(v), v1 = two ? bf16_load_b(v + VL) : v0;
            for (int r = 0; r < rows; ++r) {
                uint32_t p = o->P2[(size_t)r * Sp2 + jj];
                acc0[r] = bf16_dot(acc0[r], p, v0);
                if (two) acc1[r] = bf16_dot(acc1[r], p, v1);
            }
        }
        for (int r = 0; r < rows; ++r) {
            float *row = out + (size_t)(t0 + r) * ldo;
            int len0 = hd - d < VL ? hd - d : VL, len1 = hd - d - VL < VL ? hd - d - VL : VL;
            attention_store_out(row + d, acc0[r], inv_sum[r], len0);
            if (two && len1 > 0) attention_store_out(row + d + VL, acc1[r], inv_sum[r], len1);
        }
    }
}

static inline uint32_t bf16_pair(float lo, float hi) { return (uint32_t)bf16_of(lo) | (uint32_t)bf16_of(hi) << 16; }

/* bf16_of of each lane, in the high half of the lane's word (the low half zero). */
static inline vu vbf16_high(vf x) {
    vu u;
    memcpy(&u, &x, sizeof u);
    return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}

/* Fill a head's packed operands from its row-major K/V columns: K^T (fp32), or K^T and V as bf16 pairs; padding is zero. */
static inline void attention_prepare_head(AttentionOperands *o, float *KT, const float *K, int ldk, const float *V,
                                          int ldv, int S) {
    const int Sp = o->Sp, hd = o->hd;
    if (!o->bf16) {
        for (int j0 = 0; j0 < Sp; j0 += 16) /* blocked transpose: 16 keys x 16 dims at a time */
            for (int d0 = 0; d0 < hd; d0 += 16)
                for (int j = j0; j < j0 + 16 && j < Sp; ++j)
                    for (int d = d0; d < d0 + 16 && d < hd; ++d)
                        KT[(size_t)d * Sp + j] = j < S ? K[(size_t)j * ldk + d] : 0.0f;
        o->KT = KT;
        return;
    }
    /* K^T as pairs: 16 keys x 16 words at a time, each key's run of 32 dims rounded by the vector conversion
     * (rows_to_bf16: a row's bf16 values in order are its pairs), then the small block transposed. */
    const int hd2 = o->hd2;
    for (int j0 = 0; j0 < Sp; j0 += 16) {
        int keys = S - j0 < 16 ? S - j0 : 16;
        for (int dd0 = 0; dd0 < hd2; dd0 += 16) {
            uint32_t block[16][16];
            int words = hd2 - dd0 < 16 ? hd2 - dd0 : 16, d0 = 2 * dd0, count = hd - d0 < 32 ? hd - d0 : 32;
            for (int r = 0; r < 16; ++r) {
                if (r < keys) rows_to_bf16(K + (size_t)(j0 + r) * ldk + d0, ldk, 1, count, block[r], 16);
                else memset(block[r], 0, sizeof block[r]);
            }
            for (int w = 0; w < words; ++w)
                for (int r = 0; r < 16 && j0 + r < Sp; ++r) o->KT2[(size_t)(dd0 + w) * Sp + j0 + r] = block[r][w];
        }
    }
    /* V as pairs of consecutive keys: the two rows rounded a vector at a time and interleaved by halves. */
    for (int jj = 0; jj < Sp / 2; ++jj) {
        const float *lo = 2 * jj < S ? V + (size_t)(2 * jj) * ldv : NULL;
        const float *hi = 2 * jj + 1 < S ? V + (size_t)(2 * jj + 1) * ldv : NULL;
        uint32_t *row = o->V2 + (size_t)jj * o->hdv;
        int d = 0;
        for (; d + VL <= hd; d += VL) {
            vu a = lo ? vbf16_high(vload(lo + d)) : (vu){0}, b = hi ? vbf16_high(vload(hi + d)) : (vu){0};
            vu pair = (a >> 16) | b;
            memcpy(row + d, &pair, sizeof pair);
        }
        for (; d < o->hdv; ++d) row[d] = d < hd ? bf16_pair(lo ? lo[d] : 0.0f, hi ? hi[d] : 0.0f) : 0;
    }
}

#if CANAO_AMX_BF16
/* bf16 attention on AMX tiles, 16 query rows at a time: scores = Q2 (16 rows x 16 pairs of d per tile) times
 * KT2 (16 pairs of d x 16 keys per tile), 32 keys per step; then mask and row maxima as above, the exps (a
 * shorter polynomial than vexp, exact to bf16) and their bf16 rounding in one pass; then context = P2 (16 rows x
 * 16 pairs of keys) times V2 (16 pairs of keys x 16 dims per tile). q, k, v are the vector path's operands (KT2
 * and Q2 get zero rows/words up to a multiple of 16 pairs); the exps differ from vexp's by < 3e-6 relative, so
 * a probability can round to the other bf16 neighbour: both paths agree to bf16 accuracy, not bit for bit. */
#define AMX_TR 16
#define ATT_HD2(hd2) (((hd2) + AMX_KP - 1) / AMX_KP * AMX_KP) /* pairs of d: whole AMX tiles (zeros past hd2) */

/* e^(x - m) for the bf16 probabilities, given shift = m log2(e): 2^f by a degree-5 Taylor polynomial on
 * [-1/2, 1/2] (relative error < 3e-6, far under bf16's 2^-9), times 2^n by scalef; masked (-inf) scores clamp
 * to 2^-126. About 10 instructions a vector against vexp's 17: the exps were the block's largest part. */
static inline vf vexp2_shifted(vf x, vf shift) {
    __m512 t = _mm512_max_ps((__m512)(x * 1.44269504088896341f - shift), _mm512_set1_ps(-126.0f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf f = (vf)(t - n);
    vf p = vbroadcast(1.3333558146e-3f);
    p = p * f + 9.6181291076e-3f;
    p = p * f + 5.5504108665e-2f;
    p = p * f + 2.4022650696e-1f;
    p = p * f + 6.9314718056e-1f;
    p = p * f + 1.0f;
    return (vf)_mm512_scalef_ps((__m512)p, n);
}

static inline void attention_block_amx(const AttentionOperands *o, const float *Q, int ldq, const float *mask_row,
                                       int unmasked, float *scores, float *out, int ldo, int t0, int S, int past,
                                       int causal) {
    const int Sp = o->Sp, Sp2 = Sp / 2, hd2 = o->hd2, hd2p = ATT_HD2(hd2), hdv = o->hdv, hd = o->hd;
    const int keys = causal ? past + t0 + AMX_TR : S; /* what the block's last row sees */
    const int span = (keys + 2 * VL - 1) / (2 * VL) * (2 * VL); /* score columns computed; <= Sp */
    rows_to_bf16(Q + (size_t)t0 * ldq, ldq, AMX_TR, hd, o->Q2, hd2p);
    for (int r = 0; r < AMX_TR; ++r)
        for (int w = hd2; w < hd2p; ++w) o->Q2[(size_t)r * hd2p + w] = 0;
    for (int j = 0; j < span; j += 32) {
        _tile_zero(0);
        _tile_zero(1);
        for (int c = 0; c < hd2p; c += AMX_KP) {
            _tile_loadd(4, o->Q2 + c, (size_t)hd2p * 4);
            _tile_loadd(6, o->KT2 + (size_t)c * Sp + j, (size_t)Sp * 4);
            _tile_loadd(7, o->KT2 + (size_t)c * Sp + j + 16, (size_t)Sp * 4);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
        }
        _tile_stored(0, scores + j, (size_t)Sp * 4);
        _tile_stored(1, scores + j + 16, (size_t)Sp * 4);
    }
    float inv_sum[AMX_TR];
    vf row_max[AMX_TR], column[AMX_TR];
    for (int r = 0; r < AMX_TR; ++r) row_max[r] = vbroadcast(-INFINITY);
    int j0 = 0; /* keys whose mask is 0 (and no causal cut): their stored scores stand, only the maxima are due */
    for (; !causal && j0 + VL <= unmasked && j0 < span; j0 += VL)
        for (int r = 0; r < AMX_TR; ++r) row_max[r] = vmax(row_max[r], vload(scores + (size_t)r * Sp + j0));
    for (int j = j0; j < span; j += VL) { /* mask, causal cut and maxima as the vector path stores its scores */
        for (int r = 0; r < AMX_TR; ++r) column[r] = vload(scores + (size_t)r * Sp + j);
        attention_store_scores(scores, Sp, mask_row, j, t0, AMX_TR, past, causal, column, row_max);
    }
    /* One pass a row: exps (fp32 sums) straight into bf16 pairs, zeros past the last key so that whole tiles
     * of pairs can be multiplied. (Three passes before -- exps, zeros, conversion -- cost 1/2 of the block.) */
    for (int r = 0; r < AMX_TR; ++r) {
        const float *row = scores + (size_t)r * Sp;
        float top = vmax_lanes(row_max[r]);
        vf shift = vbroadcast(top == -INFINITY ? 0.0f : top * 1.44269504088896341f); /* a row all masked: ~0s */
        vf sum = {0};
        for (int j = 0; j < span; j += 2 * VL) {
            vf e0 = vexp2_shifted(vload(row + j), shift), e1 = vexp2_shifted(vload(row + j + VL), shift);
            if (j + 2 * VL > keys) {
                vf lane = {0};
                for (int l = 0; l < VL; ++l) lane[l] = (float)(j + l);
                e0 = vselect(lane < (float)keys, e0, vbroadcast(0.0f));
                e1 = vselect(lane + (float)VL < (float)keys, e1, vbroadcast(0.0f));
            }
            sum += e0 + e1;
            _mm512_storeu_si512(o->P2 + (size_t)r * Sp2 + j / 2, (__m512i)_mm512_cvtne2ps_pbh((__m512)e1, (__m512)e0));
        }
        inv_sum[r] = 1.0f / vsum(sum);
    }
    /* p v: the keys in two halves into separate accumulators (4 tiles), so that consecutive tile products do
     * not all wait on one accumulator; the halves are added at the store. */
    const int pairs = span / 2, half = pairs / 2 / AMX_KP * AMX_KP;
    const size_t p_stride = (size_t)Sp2 * 4, v_stride = (size_t)hdv * 4;
    float acc[2][AMX_TR][32] __attribute__((aligned(64)));
    for (int d = 0; d < hdv; d += 32) {
        int two = d + 32 <= hdv; /* hdv is a multiple of 16 */
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int c = 0; c < half; c += AMX_KP) {
            _tile_loadd(4, o->P2 + c, p_stride);
            _tile_loadd(5, o->P2 + c + half, p_stride);
            _tile_loadd(6, o->V2 + (size_t)c * hdv + d, v_stride);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, o->V2 + (size_t)(c + half) * hdv + d, v_stride);
            _tile_dpbf16ps(2, 5, 7);
            if (two) {
                _tile_loadd(6, o->V2 + (size_t)c * hdv + d + 16, v_stride);
                _tile_dpbf16ps(1, 4, 6);
                _tile_loadd(7, o->V2 + (size_t)(c + half) * hdv + d + 16, v_stride);
                _tile_dpbf16ps(3, 5, 7);
            }
        }
        for (int c = 2 * half; c < pairs; c += AMX_KP) {
            _tile_loadd(4, o->P2 + c, p_stride);
            _tile_loadd(6, o->V2 + (size_t)c * hdv + d, v_stride);
            _tile_dpbf16ps(0, 4, 6);
            if (two) {
                _tile_loadd(7, o->V2 + (size_t)c * hdv + d + 16, v_stride);
                _tile_dpbf16ps(1, 4, 7);
            }
        }
        _tile_stored(0, &acc[0][0][0], 32 * 4);
        _tile_stored(1, &acc[0][0][16], 32 * 4);
        _tile_stored(2, &acc[1][0][0], 32 * 4);
        _tile_stored(3, &acc[1][0][16], 32 * 4);
        for (int r = 0; r < AMX_TR; ++r) {
            float *row = out + (size_t)(t0 + r) * ldo;
            int len0 = hd - d < VL ? hd - d : VL, len1 = hd - d - VL < VL ? hd - d - VL : VL;
            attention_store_out(row + d, vload(acc[0][r]) + vload(acc[1][r]), inv_sum[r], len0);
            if (two && len1 > 0)
                attention_store_out(row + d + VL, vload(acc[0][r] + VL) + vload(acc[1][r] + VL), inv_sum[r], len1);
        }
    }
}
#define ATT_ROWS (AMX_TR > ATT_RB ? AMX_TR : ATT_RB) /* rows of scratch a block may use */
#else
#define ATT_ROWS ATT_RB
#define ATT_HD2(hd2) (hd2)
#endif

/* Returns 0, or 4 when the per-head scratch (K^T, a block of scores, the mask row, and the bf16
 * operands) cannot be allocated; scratch is on the heap because it grows with S x head_dim.
 * bf16 != 0: both products read bf16-rounded q, k, v and exps with fp32 sums (softmax in fp32). */
static inline int attention(const float *Q, int ldq, const float *K, int ldk, const float *V, int ldv,
                            const float *mask, float *out, int ldo, int T, int S, int past,
                            int heads, int hd, int causal, int bf16) {
    const int Sp = (S + 2 * VL - 1) / (2 * VL) * (2 * VL), hd2 = (hd + 1) / 2, hdv = (hd + VL - 1) / VL * VL;
    const size_t fp32_words = bf16 ? 0 : (size_t)hd * Sp;
    const int hd2t = ATT_HD2(hd2); /* K^T rows (zero past hd2) and the Q2 row stride bound */
    const size_t bf16_words = bf16 ? (size_t)hd2t * Sp + (size_t)(Sp / 2) * hdv + (size_t)ATT_ROWS * hd2t
                                         + (size_t)ATT_ROWS * (Sp / 2) : 0;
    int status = 0;
#pragma omp parallel for schedule(static) if (T * S * heads * hd > 8192)
    for (int h = 0; h < heads; ++h) {
        float *scratch = malloc((fp32_words + bf16_words + (size_t)ATT_ROWS * Sp + (size_t)Sp) * sizeof(float));
        if (scratch == NULL) {
#pragma omp atomic write
            status = 4;
            continue;
        }
        float *KT = scratch, *scores = scratch + fp32_words + bf16_words, *mask_row = scores + (size_t)ATT_ROWS * Sp;
        AttentionOperands o = {NULL, NULL, NULL, NULL, NULL, Sp, hd, hd2, hdv, bf16};
        if (bf16) {
            o.KT2 = (uint32_t *)scratch;
            o.V2 = o.KT2 + (size_t)hd2t * Sp;
            o.Q2 = o.V2 + (size_t)(Sp / 2) * hdv;
            o.P2 = o.Q2 + (size_t)ATT_ROWS * hd2t;
            memset(o.KT2 + (size_t)hd2 * Sp, 0, (size_t)(hd2t - hd2) * Sp * sizeof(uint32_t));
        }
        for (int j = 0; j < Sp; ++j) mask_row[j] = j < S ? (mask ? mask[j] : 0.0f) : -INFINITY;
        attention_prepare_head(&o, KT, K + h * hd, ldk, V + h * hd, ldv, S);
        int t0 = 0;
#if CANAO_AMX_BF16
        if (bf16 && T >= AMX_TR && amx_usable()) {
            int unmasked = 0; /* leading keys with a zero mask (a padded batch row masks its tail) */
            while (unmasked < S && mask_row[unmasked] == 0.0f) ++unmasked;
            amx_configure();
            for (; t0 + AMX_TR <= T; t0 += AMX_TR)
                attention_block_amx(&o, Q + h * hd, ldq, mask_row, unmasked, scores, out + h * hd, ldo, t0, S, past,
                                    causal);
            _tile_release();
        }
#endif
        for (; t0 < T; t0 += ATT_RB) {
            int rows = T - t0 < ATT_RB ? T - t0 : ATT_RB;
            int keys = causal ? past + t0 + rows : S; /* the last row of the block sees the most keys */
            float maxima[ATT_RB], inv_sum[ATT_RB];
            if (bf16) rows_to_bf16(Q + (size_t)t0 * ldq + h * hd, ldq, rows, hd, o.Q2, hd2);
            attention_scores_block(&o, Q + h * hd, ldq, mask_row, scores, maxima, t0, rows, past, causal);
            attention_softmax_rows(scores, maxima, inv_sum, rows, Sp, keys);
            if (bf16) {
                rows_to_bf16(scores, Sp, rows, keys, o.P2, Sp / 2);
                if (rows == ATT_RB) attention_context_block_bf16(&o, inv_sum, out + h * hd, ldo, t0, ATT_RB, keys);
                else attention_context_block_bf16(&o, inv_sum, out + h * hd, ldo, t0, rows, keys);
            } else if (rows == ATT_RB) {
                attention_context_block(scores, inv_sum, Sp, V + h * hd, ldv, out + h * hd, ldo, t0, ATT_RB, keys, hd);
            } else {
                attention_context_block(scores, inv_sum, Sp, V + h * hd, ldv, out + h * hd, ldo, t0, rows, keys, hd);
            }
        }
        free(scratch);
    }
    return status;
}

/* Elementwise activation over n floats (for activations no GEMM absorbed). */
static inline void activation(const float *x, float *y, long n, int kind, float scale) {
    Epilogue e = {{kind, EPI_END}, NULL, NULL, 0, scale, NULL, NULL, 0.0f};
    long i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, epilogue_apply(&e, vload(x + i), 0, 0, VL));
    if (i < n) {
        vf v = {0};
        memcpy(&v, x + i, (size_t)(n - i) * sizeof(float));
        v = epilogue_apply(&e, v, 0, 0, (int)(n - i));
        memcpy(y + i, &v, (size_t)(n - i) * sizeof(float));
    }
}
