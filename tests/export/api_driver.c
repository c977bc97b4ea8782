/* Test driver of the exported C API (canao_api.h), linked with an exported package's sources.
 *
 *   api_driver run WEIGHTS CALLS OUT   replays a calls file (compiler/codegen/runner.py's format) through the
 *                                      API: encoders encode each call (mask 0 -> keep), decoders reset at
 *                                      past == 0 and append; writes every output of every call to OUT
 *   api_driver bad WEIGHTS             bad inputs must give the documented codes, never a crash (run it under
 *                                      ASan + UBSan); prints "ok"
 *   api_driver open WEIGHTS            opens and prints the code and message (damaged / foreign files)
 *   api_driver greedy WEIGHTS N ID...  a decoder's N greedy (argmax) tokens after the prompt ids, one per line
 *   api_driver fuzz WEIGHTS N          N random calls (lengths around 0 and max, ids around the vocabulary's
 *                                      ends, masks with bad values) must succeed exactly when the input is valid;
 *                                      then N damaged copies of the weights (truncated, bytes flipped) must be
 *                                      refused; prints "ok"
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "canao_api.h"

static int32_t *read_all(const char *path, long *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int32_t *buf = malloc((size_t)*bytes + 4);
    if (buf && fread(buf, 1, (size_t)*bytes, f) != (size_t)*bytes) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

#define EXPECT(call, code)                                                                        \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_ != (code)) {                                                                      \
            fprintf(stderr, "line %d: %s gave %d (%s), expected %d\n", __LINE__, #call, rc_,     \
                    canao_model_error(m), (code));                                                \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)

static int bad_inputs(canao_model *m) {
    int max = canao_model_max_positions(m), vocab = canao_model_vocab_size(m);
    int32_t *ids = calloc((size_t)max + 2, sizeof(int32_t));
    int32_t keep[2] = {1, 7};
    const float *data;
    long count;
    if (!ids) return 1;
    EXPECT(canao_model_output(m, 0, &data, &count), CANAO_EARG); /* no call yet */
    EXPECT(canao_model_output(NULL, 0, &data, &count), CANAO_EARG);
    EXPECT(canao_model_set_threads(m, 0), CANAO_EARG);
    EXPECT(canao_model_set_threads(m, 2), CANAO_OK);
    if (canao_model_kind(m) == CANAO_ENCODER) {
        EXPECT(canao_model_encode(m, ids, NULL, NULL, 0), CANAO_EINPUT);
        EXPECT(canao_model_encode(m, ids, NULL, NULL, -3), CANAO_EINPUT);
        EXPECT(canao_model_encode(m, ids, NULL, NULL, max + 1), CANAO_EINPUT);
        EXPECT(canao_model_encode(m, NULL, NULL, NULL, 2), CANAO_EARG);
        ids[1] = vocab;
        EXPECT(canao_model_encode(m, ids, NULL, NULL, 2), CANAO_EINPUT);
        ids[1] = -1;
        EXPECT(canao_model_encode(m, ids, NULL, NULL, 2), CANAO_EINPUT);
        ids[1] = 0;
        EXPECT(canao_model_encode(m, ids, NULL, keep, 2), CANAO_EINPUT);
        int32_t types[2] = {0, 9};
        EXPECT(canao_model_encode(m, ids, types, NULL, 2), CANAO_EINPUT);
        EXPECT(canao_model_reset(m), CANAO_EKIND);
        EXPECT(canao_model_append(m, ids, 1), CANAO_EKIND);
        EXPECT(canao_model_encode(m, ids, NULL, NULL, max), CANAO_OK);
        EXPECT(canao_model_output(m, canao_model_num_outputs(m), &data, &count), CANAO_EARG);
        EXPECT(canao_model_output(m, 0, &data, &count), CANAO_OK);
    } else {
        EXPECT(canao_model_encode(m, ids, NULL, NULL, 1), CANAO_EKIND);
        EXPECT(canao_model_reset(m), CANAO_OK);
        EXPECT(canao_model_append(m, ids, 0), CANAO_EINPUT);
        EXPECT(canao_model_append(m, ids, max + 1), CANAO_EINPUT);
        ids[0] = vocab;
        EXPECT(canao_model_append(m, ids, 1), CANAO_EINPUT);
        ids[0] = 0;
        EXPECT(canao_model_context_length(m), 0); /* refused calls add nothing */
        EXPECT(canao_model_append(m, ids, max - 1), CANAO_OK);
        EXPECT(canao_model_append(m, ids, 2), CANAO_EINPUT); /* room for one */
        EXPECT(canao_model_append(m, ids, 1), CANAO_OK);
        EXPECT(canao_model_append(m, ids, 1), CANAO_EFULL);
        EXPECT(canao_model_output(m, 0, &data, &count), CANAO_OK);
        if (count != vocab) return 1;
        EXPECT(canao_model_reset(m), CANAO_OK);
        EXPECT(canao_model_context_length(m), 0);
    }
    free(ids);
    return 0;
}

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static int rnd(int lo, int hi) { /* uniform in [lo, hi] */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return lo + (int)(rng_state % (uint64_t)(hi - lo + 1));
}

static int fuzz(canao_model *m, const char *weights_path, int n) {
    int max = canao_model_max_positions(m), vocab = canao_model_vocab_size(m);
    int32_t *ids = malloc((size_t)(max + 8) * sizeof(int32_t)), *types = malloc((size_t)(max + 8) * sizeof(int32_t));
    int32_t *keep = malloc((size_t)(max + 8) * sizeof(int32_t));
    if (!ids || !types || !keep) return 2;
    int decoder = canao_model_kind(m) == CANAO_DECODER;
    for (int k = 0; k < n; k++) {
        int T = rnd(0, 3) == 0 ? rnd(-2, 2) : rnd(max - 2, max + 3);
        if (rnd(0, 1)) T = rnd(1, max);
        int valid = T >= 1 && T <= max;
        for (int t = 0; t < T; t++) {
            ids[t] = rnd(0, 19) == 0 ? rnd(-3, 3) + (rnd(0, 1) ? vocab : 0) : rnd(0, vocab - 1);
            types[t] = 0;
            keep[t] = rnd(0, 49) == 0 ? 2 : 1;
            if (ids[t] < 0 || ids[t] >= vocab || (!decoder && keep[t] == 2)) valid = 0;
        }
        int rc;
        if (decoder) {
            canao_model_reset(m);
            rc = canao_model_append(m, ids, T);
        } else {
            rc = canao_model_encode(m, ids, types, keep, T);
        }
        if ((rc == CANAO_OK) != valid) {
            fprintf(stderr, "fuzz call %d: T=%d valid=%d but rc=%d (%s)\n", k, T, valid, rc, canao_model_error(m));
            return 1;
        }
    }
    free(ids), free(types), free(keep);
    long bytes;
    unsigned char *raw = (unsigned char *)read_all(weights_path, &bytes);
    if (!raw) return 2;
    unsigned char *copy = malloc((size_t)bytes + 1);
    for (int k = 0; k < n && copy; k++) {
        memcpy(copy, raw, (size_t)bytes);
        long size = bytes;
        if (rnd(0, 1)) size = rnd(0, (int)(bytes < 200000 ? bytes - 1 : 200000));
        else for (int f = rnd(1, 4); f > 0; f--) {
            long at = rnd(0, 9) < 7 ? rnd(0, 63) : rnd(64, (int)(bytes - 1 < 2000000000 ? bytes - 1 : 2000000000));
            copy[at] ^= (unsigned char)rnd(1, 255);
        }
        if (size == bytes && memcmp(copy, raw, (size_t)bytes) == 0) continue; /* flips that cancelled out */
        canao_model *bad = NULL;
        char msg[256];
        int rc = canao_model_open_buffer(copy, (size_t)size, &bad, msg, sizeof msg);
        if (rc == CANAO_OK || bad != NULL) {
            fprintf(stderr, "damaged weights %d (size %ld of %ld) were accepted\n", k, size, bytes);
            canao_model_free(bad);
            return 1;
        }
    }
    free(copy);
    free(raw);
    return 0;
}

static int greedy(canao_model *m, int n, char **prompt, int n_prompt) {
    int32_t *ids = malloc((size_t)(n_prompt + 1) * sizeof(int32_t));
    if (!ids || n_prompt < 1) return 2;
    for (int i = 0; i < n_prompt; i++) ids[i] = atoi(prompt[i]);
    canao_model_reset(m);
    int rc = canao_model_append(m, ids, n_prompt);
    int vocab = canao_model_vocab_size(m);
    for (int k = 0; k < n && rc == CANAO_OK; k++) {
        const float *logits;
        long count;
        canao_model_output(m, 0, &logits, &count);
        const float *last = logits + count - vocab;
        int best = 0;
        for (int v = 1; v < vocab; v++)
            if (last[v] > last[best]) best = v;
        printf("%d\n", best);
        ids[0] = best;
        if (k + 1 < n) rc = canao_model_append(m, ids, 1);
    }
    free(ids);
    return rc == CANAO_OK ? 0 : 3;
}

static int replay(canao_model *m, const char *calls_path, const char *out_path) {
    long bytes;
    int32_t *calls = read_all(calls_path, &bytes);
    FILE *out = fopen(out_path, "wb");
    if (!calls || !out) return 2;
    int32_t n = calls[0], *p = calls + 1;
    int32_t *keep = malloc((size_t)canao_model_max_positions(m) * sizeof(int32_t));
    for (int k = 0; k < n; ++k) {
        int T = p[0], past = p[1];
        const int32_t *ids = p + 2, *types = p + 2 + T;
        const float *mask = (const float *)(p + 2 + 2 * T);
        int rc;
        if (canao_model_kind(m) == CANAO_ENCODER) {
            for (int t = 0; t < T; ++t) keep[t] = mask[t] == 0.0f;
            rc = canao_model_encode(m, ids, types, keep, T);
        } else {
            if (past == 0) canao_model_reset(m);
            rc = canao_model_append(m, ids, T);
        }
        if (rc != CANAO_OK) {
            fprintf(stderr, "call %d: %s: %s\n", k, canao_strerror(rc), canao_model_error(m));
            return 3;
        }
        for (int o = 0; o < canao_model_num_outputs(m); ++o) {
            const float *data;
            long count;
            if (canao_model_output(m, o, &data, &count) != CANAO_OK) return 3;
            fwrite(data, sizeof(float), (size_t)count, out);
        }
        p += 2 + 3 * T;
    }
    free(keep);
    free(calls);
    fclose(out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s run|bad|open WEIGHTS [CALLS OUT]\n", argv[0]);
        return 2;
    }
    canao_model *m = NULL;
    char msg[512];
    int rc = canao_model_open(argv[2], &m, msg, sizeof msg);
    if (strcmp(argv[1], "open") == 0) {
        printf("%d %s\n", rc, rc == CANAO_OK ? canao_model_simd(m) : msg);
        canao_model_free(m);
        return 0;
    }
    if (rc != CANAO_OK) {
        fprintf(stderr, "open: %s\n", msg);
        return 3;
    }
    int status = 2;
    if (strcmp(argv[1], "bad") == 0) {
        status = bad_inputs(m);
        if (status == 0) printf("ok\n");
    } else if (strcmp(argv[1], "greedy") == 0 && argc >= 5) {
        status = greedy(m, atoi(argv[3]), argv + 4, argc - 4);
    } else if (strcmp(argv[1], "fuzz") == 0 && argc == 4) {
        status = fuzz(m, argv[2], atoi(argv[3]));
        if (status == 0) printf("ok\n");
    } else if (strcmp(argv[1], "run") == 0 && argc == 5) {
        status = replay(m, argv[3], argv[4]);
    }
    canao_model_free(m);
    return status;
}
