/* canao_api.h: load and run one exported canao model from C, with no Python and no dependency beyond libc,
 * libm and (optionally) OpenMP.
 *
 * An exported directory (`canao export`) holds the generated model (kernel.c, the ABI in canao_model.h),
 * this API (canao_api.c), weights.bin and the tokenizer. weights.bin starts with a 64-byte header (magic,
 * ABI version, the graph hash of the code it belongs to, the SIMD level its panels were packed for, the
 * float count and a checksum), so a truncated, damaged or foreign file is refused with a message instead of
 * running with wrong numbers.
 *
 * Every function returns CANAO_OK (0) or a negative CANAO_E* code and never aborts; canao_strerror()
 * names a code, and canao_model_error() gives the details of the last failed call on a model. One model
 * handle owns one activation arena: calls on the same handle must not overlap (open one handle per thread).
 *
 *     canao_model *m; char msg[256];
 *     if (canao_model_open("weights.bin", &m, msg, sizeof msg) != CANAO_OK) { puts(msg); return 1; }
 *     int32_t ids[] = {101, 7592, 102};
 *     if (canao_model_encode(m, ids, NULL, NULL, 3) == CANAO_OK) {
 *         const float *logits; long n;
 *         canao_model_output(m, 0, &logits, &n);
 *     }
 *     canao_model_free(m);
 */
#ifndef CANAO_API_H
#define CANAO_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CANAO_OK = 0,
    CANAO_EARG = -1,      /* a NULL pointer, a negative size or an index out of range */
    CANAO_EIO = -2,       /* the weights file cannot be read */
    CANAO_EFORMAT = -3,   /* not a canao weights file of this version, truncated, or damaged (checksum) */
    CANAO_EMISMATCH = -4, /* weights of another model or SIMD level than the code linked in */
    CANAO_ENOMEM = -5,    /* out of memory */
    CANAO_ECPU = -6,      /* this CPU lacks the SIMD instructions the library was built for */
    CANAO_EINPUT = -7,    /* a length or token id out of range (canao_model_error says which) */
    CANAO_EKIND = -8,     /* an encoder call on a decoder, or the reverse */
    CANAO_EFULL = -9      /* the decoder's context holds max positions tokens: reset it */
};

enum { CANAO_ENCODER = 0, CANAO_DECODER = 1 };

typedef struct canao_model canao_model;

/* Open from a weights file, or from a buffer of `size` bytes (copied; the caller keeps its buffer). On
 * failure *out is NULL and, when `msg` is not NULL, up to msg_size bytes of explanation are written. */
int canao_model_open(const char *weights_path, canao_model **out, char *msg, size_t msg_size);
int canao_model_open_buffer(const void *data, size_t size, canao_model **out, char *msg, size_t msg_size);
void canao_model_free(canao_model *m);

const char *canao_strerror(int code);
const char *canao_model_error(const canao_model *m); /* the last failure on m ("" after success) */

int canao_model_kind(const canao_model *m);           /* CANAO_ENCODER or CANAO_DECODER */
int canao_model_max_positions(const canao_model *m);  /* longest input (encoder) or context (decoder) */
int canao_model_vocab_size(const canao_model *m);     /* token ids must lie in [0, vocab size) */
int canao_model_num_outputs(const canao_model *m);
const char *canao_model_simd(const canao_model *m); /* the SIMD level running m (picked at open; CANAO_SIMD forces one) */
int canao_model_set_threads(canao_model *m, int threads);

/* Encoder forward over one sequence of T tokens. type_ids and keep (1: attend, 0: padding) may be NULL
 * (all 0 / all 1). Outputs: classification -> logits [labels]; question answering -> [T, 2] start and end
 * logits interleaved; backbone -> last hidden state [T, hidden] then pooled [hidden]. */
int canao_model_encode(canao_model *m, const int32_t *ids, const int32_t *type_ids, const int32_t *keep, int T);

/* Decoder: canao_model_reset starts a new context; canao_model_append runs T more tokens through it (the
 * prompt, then one generated token at a time) with the KV cache; output 0 holds their logits [T, vocab]. */
int canao_model_reset(canao_model *m);
int canao_model_append(canao_model *m, const int32_t *ids, int T);
int canao_model_context_length(const canao_model *m);

/* Output i of the last successful call: a pointer into the model's arena (valid until the next call on m)
 * and its float count. */
int canao_model_output(const canao_model *m, int i, const float **data, long *count);

#ifdef __cplusplus
}
#endif

#endif
