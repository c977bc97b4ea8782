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
 * tanh, scale) is applied to the tile before it is stored.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX2__)
#define VL 8
#else
#define VL 4 /* NEON on aarch64, SSE on x86-64 */
#endif
#define NR (2 * VL)
#ifndef MR
#define MR 6
#endif

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vbroadcast(float x) { return (vf){0} + x; }
/* Lane-wise select: mask lanes are all ones (true) or zero, as vector comparisons give. */
static inline vf vselect(vi mask, vf if_true, vf if_false) {
    return (vf)((mask & (vi)if_true) | (~mask & (vi)if_false));
}
static inline vf vmax(vf a, vf b) { return vselect(a > b, a, b); }
static inline vf vmin(vf a, vf b) { return vselect(a < b, a, b); }
static inline vf vfloor(vf x) {
    vf t = __builtin_convertvector(__builtin_convertvector(x, vi), vf); /* truncation */
    return t + __builtin_convertvector(t > x, vf);                      /* true lanes are -1 */
}
static inline float vsum(vf v) {
    float s = 0.0f;
    for (int i = 0; i < VL; ++i) s += v[i];
    return s;
}

/* exp(x): Cody-Waite range reduction x = n ln2 + r, degree-6 polynomial for
 * e^r on |r| <= ln2/2 (Cephes expf coefficients), scale by 2^n through the
 * exponent bits. Relative error ~2 ulp; inputs clamped to [-87.3, 88.7]. */
static inline vf vexp(vf x) {
    x = vmin(vmax(x, vbroadcast(-87.3f)), vbroadcast(88.7f));
    vf n = vfloor(x * 1.44269504088896341f + 0.5f); /* nearest integer to x / ln2 */
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = vbroadcast(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
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
} Epilogue;

/* Apply the epilogue to `len` (<= VL) columns starting at column n of row m. */
static inline vf epilogue_apply(const Epilogue *e, vf v, int m, int n, int len) {
    for (int s = 0; s < EPI_MAX && e->steps[s] != EPI_END; ++s) {
        switch (e->steps[s]) {
        case EPI_BIAS: {
            vf b = {0};
            memcpy(&b, e->bias + n, (size_t)len * sizeof(float));
            v += b;
            break;
        }
        case EPI_RESIDUAL: {
            vf r = {0};
            memcpy(&r, e->residual + (size_t)m * e->ld_residual + n, (size_t)len * sizeof(float));
            v += r;
            break;
        }
        case EPI_GELU: v = vgelu_erf(v); break;
        case EPI_GELU_TANH: v = vgelu_tanh(v); break;
        case EPI_TANH: v = vtanh(v); break;
        case EPI_SCALE: v *= e->scale; break;
        default: break;
        }
    }
    return v;
}

/* Store an accumulated vector (columns n..n+VL-1 of row m) through the epilogue, clipped at N. */
static inline void store_tile_vec(float *C, int ldc, int m, int n, int N, vf acc, const Epilogue *e) {
    int len = N - n < VL ? N - n : VL;
    if (len <= 0) return;
    vf v = epilogue_apply(e, acc, m, n, len);
    if (len == VL) vstore(C + (size_t)m * ldc + n, v);
    else memcpy(C + (size_t)m * ldc + n, &v, (size_t)len * sizeof(float));
}

/* ------------------------------------------------------------------- GEMM */
/* One MR x NR tile (rows m0.., panel p) accumulated over all K. */
static inline void gemm_tile_full(const float *A, int lda, const float *panel, int K,
                                  float *C, int ldc, int m0, int n0, int N, const Epilogue *e) {
    vf acc0[MR], acc1[MR];
    for (int r = 0; r < MR; ++r) { acc0[r] = (vf){0}; acc1[r] = (vf){0}; }
    const float *a = A + (size_t)m0 * lda;
    for (int k = 0; k < K; ++k) {
        vf b0 = vload(panel + (size_t)k * NR), b1 = vload(panel + (size_t)k * NR + VL);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            vf ar = vbroadcast(a[(size_t)r * lda + k]);
            acc0[r] += ar * b0;
            acc1[r] += ar * b1;
        }
    }
    for (int r = 0; r < MR; ++r) {
        store_tile_vec(C, ldc, m0 + r, n0, N, acc0[r], e);
        store_tile_vec(C, ldc, m0 + r, n0 + VL, N, acc1[r], e);
    }
}

/* The last rows (fewer than MR) of a panel, one row at a time. */
static inline void gemm_tile_rows(const float *A, int lda, const float *panel, int K,
                                  float *C, int ldc, int m0, int rows, int n0, int N, const Epilogue *e) {
    for (int r = 0; r < rows; ++r) {
        vf acc0 = {0}, acc1 = {0};
        const float *a = A + (size_t)(m0 + r) * lda;
        for (int k = 0; k < K; ++k) {
            vf ar = vbroadcast(a[k]);
            acc0 += ar * vload(panel + (size_t)k * NR);
            acc1 += ar * vload(panel + (size_t)k * NR + VL);
        }
        store_tile_vec(C, ldc, m0 + r, n0, N, acc0, e);
        store_tile_vec(C, ldc, m0 + r, n0 + VL, N, acc1, e);
    }
}

/* C[M,N] = epilogue(A[M,K] x W^T), W packed as ceil(N/NR) panels of K x NR. */
static inline void gemm_packed(const float *A, int lda, const float *Wp, int K, int N,
                        float *C, int ldc, int M, const Epilogue *e) {
    int panels = (N + NR - 1) / NR;
    int row_blocks = (M + MR - 1) / MR;
#pragma omp parallel for collapse(2) schedule(static) if (M * N * K > 32768)
    for (int p = 0; p < panels; ++p) {
        for (int rb = 0; rb < row_blocks; ++rb) {
            const float *panel = Wp + (size_t)p * K * NR;
            int m0 = rb * MR, rows = M - m0 < MR ? M - m0 : MR;
            if (rows == MR) gemm_tile_full(A, lda, panel, K, C, ldc, m0, p * NR, N, e);
            else gemm_tile_rows(A, lda, panel, K, C, ldc, m0, rows, p * NR, N, e);
        }
    }
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

/* y = LayerNorm(x (+ r)) over rows of width H; r may be NULL. */
static inline void add_layer_norm(const float *x, const float *r, const float *g, const float *b,
                           float *y, int M, int H, float eps) {
#pragma omp parallel for schedule(static) if (M * H > 16384)
    for (int m = 0; m < M; ++m) {
        const float *xr = x + (size_t)m * H;
        const float *rr = r ? r + (size_t)m * H : NULL;
        float *yr = y + (size_t)m * H;
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < H; ++i) {
            float v = xr[i] + (rr ? rr[i] : 0.0f);
            yr[i] = v;
            sum += v;
        }
        double mean = sum / H;
        for (int i = 0; i < H; ++i) { double d = yr[i] - mean; sq += d * d; }
        float inv = (float)(1.0 / sqrt(sq / H + (double)eps));
        float fmean = (float)mean;
        for (int i = 0; i < H; ++i) yr[i] = (yr[i] - fmean) * inv * g[i] + b[i];
    }
}

/* Fused attention: out[T, heads*hd] = softmax(Q K^T + mask) V per head, one score row at a time.
 * Q/K/V rows have strides ldq/ldk/ldv; causal: query t sees keys 0..past+t. */
static inline void attention(const float *Q, int ldq, const float *K, int ldk, const float *V, int ldv,
                      const float *mask, float *out, int ldo, int T, int S, int past,
                      int heads, int hd, int causal) {
#pragma omp parallel for collapse(2) schedule(static) if (T * S * heads > 4096)
    for (int h = 0; h < heads; ++h) {
        for (int t = 0; t < T; ++t) {
            float scores[S];
            const float *q = Q + (size_t)t * ldq + h * hd;
            int keys = causal ? past + t + 1 : S;
            float mx = -INFINITY;
            for (int j = 0; j < keys; ++j) {
                float s = dot(q, K + (size_t)j * ldk + h * hd, hd) + (mask ? mask[j] : 0.0f);
                scores[j] = s;
                mx = s > mx ? s : mx;
            }
            float sum = 0.0f;
            int j = 0;
            vf vsum_acc = {0};
            for (; j + VL <= keys; j += VL) {
                vf e = vexp(vload(scores + j) - mx);
                vstore(scores + j, e);
                vsum_acc += e;
            }
            sum = vsum(vsum_acc);
            for (; j < keys; ++j) { scores[j] = expf(scores[j] - mx); sum += scores[j]; }
            float inv = 1.0f / sum;
            float *o = out + (size_t)t * ldo + h * hd;
            for (int d = 0; d < hd; ++d) o[d] = 0.0f;
            for (int jj = 0; jj < keys; ++jj) {
                float p = scores[jj] * inv;
                const float *v = V + (size_t)jj * ldv + h * hd;
                int d = 0;
                for (; d + VL <= hd; d += VL) vstore(o + d, vload(o + d) + p * vload(v + d));
                for (; d < hd; ++d) o[d] += p * v[d];
            }
        }
    }
}

/* Elementwise activation over n floats (for activations no GEMM absorbed). */
static inline void activation(const float *x, float *y, long n, int kind, float scale) {
    Epilogue e = {{kind, EPI_END}, NULL, NULL, 0, scale};
    long i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, epilogue_apply(&e, vload(x + i), 0, 0, VL));
    if (i < n) {
        vf v = {0};
        memcpy(&v, x + i, (size_t)(n - i) * sizeof(float));
        v = epilogue_apply(&e, v, 0, 0, (int)(n - i));
        memcpy(y + i, &v, (size_t)(n - i) * sizeof(float));
    }
}
