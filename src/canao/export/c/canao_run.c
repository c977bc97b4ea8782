/* canao-model-run: run an exported canao model from the command line, in C only (docs/deploy.md).
 *
 *   canao-model-run [-d DIR] [--threads N] qa -q QUESTION -c CONTEXT [--max-length N] [--doc-stride N]
 *                                         [--max-answer-tokens N]
 *   canao-model-run [-d DIR] classify -t TEXT [-p PAIR]
 *   canao-model-run [-d DIR] embed -t TEXT
 *   canao-model-run [-d DIR] generate -t PROMPT [-n MAX_NEW_TOKENS] [--temperature T] [--top-k K] [--top-p P]
 *                                     [--repetition-penalty R] [--seed S]
 *   canao-model-run [-d DIR] bench [--tokens T] [--reps N]     time to open, and forward latency at T tokens
 *
 * DIR (default ".") holds weights.bin, tokenizer.bin and model.cfg from `canao export`. A text given as "-"
 * is read from stdin. Results are JSON on stdout (generation streams one JSON line per piece of text, then a
 * summary line); bad input exits 2 with a message on stderr, never a crash.
 *
 * Question answering follows canao's Python app (apps/qa.py): questions cut to 64 tokens, the context cut
 * into windows of max_length tokens that overlap by doc_stride, in each window the n-best (20) starts x ends
 * inside the context, start <= end, at most max_answer_tokens long, scored by start + end logit; the best
 * span over all windows is the answer, returned with its byte offsets in the context.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canao_api.h"
#include "canao_tokenizer.h"

#define MAX_LABELS 64
#define N_BEST 20
#define MAX_QUESTION_TOKENS 64

typedef struct {
    char task[32];
    char labels[MAX_LABELS][64];
    int n_labels;
} config_t;

static int die(const char *fmt, const char *arg) {
    fprintf(stderr, "canao-model-run: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ JSON output */

/* A JSON string of `len` bytes: quotes, backslashes and controls escaped; invalid UTF-8 becomes U+FFFD. */
static void json_string(FILE *f, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c), i++;
        else if (c == '\n') fputs("\\n", f), i++;
        else if (c == '\t') fputs("\\t", f), i++;
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c), i++;
        else if (c < 0x80) fputc((int)c, f), i++;
        else {
            size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
            int ok = n && i + n <= len;
            for (size_t k = 1; ok && k < n; k++) ok = (p[i + k] & 0xC0) == 0x80;
            if (ok && n == 2) ok = c >= 0xC2;
            if (ok && n == 3) {
                unsigned v = (c & 0x0F) << 12 | (p[i + 1] & 0x3F) << 6;
                ok = v >= 0x800 && (v < 0xD800 || v > 0xDFFF);
            }
            if (ok && n == 4) ok = c <= 0xF4 && !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] > 0x8F);
            if (ok) fwrite(p + i, 1, n, f), i += n;
            else fputs("\\ufffd", f), i++;
        }
    }
    fputc('"', f);
}

/* ------------------------------------------------------------------ inputs */

static char *read_stream(FILE *f) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len <= 1) {
            char *more = realloc(buf, cap * 2);
            if (!more) { free(buf); return NULL; }
            buf = more, cap *= 2;
        }
    }
    if (ferror(f)) { free(buf); return NULL; }
    buf[len] = '\0';
    return buf;
}

static int read_config(const char *dir, config_t *cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.cfg", dir);
    FILE *f = fopen(path, "r");
    if (!f) return die("cannot read %s (is -d the directory `canao export` wrote?)", path);
    char line[512];
    memset(cfg, 0, sizeof *cfg);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        int index;
        char name[64];
        if (sscanf(line, "task %31s", cfg->task) == 1) continue;
        if (sscanf(line, "label %d %63[^\n]", &index, name) == 2 && index >= 0 && index < MAX_LABELS) {
            snprintf(cfg->labels[index], sizeof cfg->labels[index], "%s", name);
            if (index + 1 > cfg->n_labels) cfg->n_labels = index + 1;
        }
    }
    fclose(f);
    return cfg->task[0] ? 0 : die("%s names no task", path);
}

/* Token ids (and byte offsets) of a text; *n tokens. */
static int encode(const canao_tokenizer *tok, const char *text, int32_t **ids, int32_t **starts, int32_t **ends,
                  int *n) {
    int needed = 0;
    size_t len = strlen(text);
    int rc = canao_tok_encode(tok, text, len, NULL, NULL, NULL, 0, &needed);
    if (rc < 0 && rc != CANAO_TOK_ECAPACITY) return die("cannot tokenize the text: %s", canao_tok_error(rc));
    int cap = needed > 0 ? needed : 1;
    *ids = malloc((size_t)cap * sizeof(int32_t));
    *starts = malloc((size_t)cap * sizeof(int32_t));
    *ends = malloc((size_t)cap * sizeof(int32_t));
    if (!*ids || !*starts || !*ends) return die("%s", "out of memory");
    rc = canao_tok_encode(tok, text, len, *ids, *starts, *ends, cap, NULL);
    if (rc < 0) return die("cannot tokenize the text: %s", canao_tok_error(rc));
    *n = rc;
    return 0;
}

/* ------------------------------------------------------------------ question answering */

typedef struct { float score; int start, end; } span_t;

static void top_indices(const float *x, int from, int to, int *out, int k) {
    for (int j = 0; j < k; j++) out[j] = -1;
    for (int i = from; i < to; i++) {
        for (int j = 0; j < k; j++) {
            if (out[j] < 0 || x[i] > x[out[j]]) {
                memmove(out + j + 1, out + j, (size_t)(k - j - 1) * sizeof(int));
                out[j] = i;
                break;
            }
        }
    }
}

static int run_qa(canao_model *m, const canao_tokenizer *tok, const char *question, const char *context,
                  int max_length, int stride, int max_answer) {
    double t0 = now_ms();
    int32_t *q, *qs, *qe, *c, *cs, *ce;
    int nq, nc;
    if (encode(tok, question, &q, &qs, &qe, &nq) || encode(tok, context, &c, &cs, &ce, &nc)) return 2;
    int limit = max_length / 2 < MAX_QUESTION_TOKENS ? max_length / 2 : MAX_QUESTION_TOKENS;
    int cut = nq > limit;
    if (cut) nq = limit;
    if (stride > max_length / 2) stride = max_length / 2;
    int room = max_length - nq - 3;
    if (room <= stride || room < 1) return die("%s", "the question leaves no room for the context; raise --max-length");
    int32_t *ids = malloc((size_t)max_length * sizeof(int32_t)), *types = malloc((size_t)max_length * sizeof(int32_t));
    if (!ids || !types) return die("%s", "out of memory");
    span_t best = {-INFINITY, -1, -1};
    int windows = 0, cls = canao_tok_cls_id(tok), sep = canao_tok_sep_id(tok);
    for (int first = 0;; first += room - stride) {
        int take = nc - first < room ? nc - first : room, T = 0;
        if (take < 0) take = 0;
        ids[T] = cls, types[T++] = 0;
        for (int i = 0; i < nq; i++) ids[T] = q[i], types[T++] = 0;
        ids[T] = sep, types[T++] = 0;
        int ctx0 = T;
        for (int i = 0; i < take; i++) ids[T] = c[first + i], types[T++] = 1;
        ids[T] = sep, types[T++] = 1;
        int rc = canao_model_encode(m, ids, types, NULL, T);
        if (rc != CANAO_OK) return die("the model refused the input: %s", canao_model_error(m));
        const float *logits;
        long count;
        canao_model_output(m, 0, &logits, &count);
        float *s = malloc((size_t)T * sizeof(float)), *e = malloc((size_t)T * sizeof(float));
        if (!s || !e) return die("%s", "out of memory");
        for (int t = 0; t < T; t++) s[t] = logits[2 * t], e[t] = logits[2 * t + 1];
        int k = T < N_BEST ? T : N_BEST, starts[N_BEST], ends[N_BEST];
        top_indices(s, 0, T, starts, k);
        top_indices(e, 0, T, ends, k);
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) {
                int i = starts[a], j = ends[b];
                if (i < ctx0 || j < ctx0 || i >= ctx0 + take || j >= ctx0 + take || j < i || j - i + 1 > max_answer)
                    continue;
                if (s[i] + e[j] > best.score) best = (span_t){s[i] + e[j], first + i - ctx0, first + j - ctx0};
            }
        free(s), free(e);
        windows++;
        if (first + take >= nc) break;
    }
    printf("{\"answer\": ");
    if (best.start >= 0) {
        json_string(stdout, context + cs[best.start], (size_t)(ce[best.end] - cs[best.start]));
        printf(", \"score\": %.6g, \"start\": %d, \"end\": %d", best.score, cs[best.start], ce[best.end]);
    } else {
        printf("null");
    }
    printf(", \"windows\": %d, \"question_cut\": %s, \"ms\": %.3f}\n", windows, cut ? "true" : "false", now_ms() - t0);
    free(q), free(qs), free(qe), free(c), free(cs), free(ce), free(ids), free(types);
    return 0;
}

/* ------------------------------------------------------------------ classification and embedding */

static int run_sequence(canao_model *m, const canao_tokenizer *tok, const config_t *cfg, const char *text,
                        const char *pair, int embed) {
    double t0 = now_ms();
    int32_t *a, *as, *ae, *b = NULL, *bs = NULL, *be = NULL;
    int na, nb = 0;
    if (encode(tok, text, &a, &as, &ae, &na) || (pair && encode(tok, pair, &b, &bs, &be, &nb))) return 2;
    int max = canao_model_max_positions(m), T = 0, full = na + nb + (pair ? 3 : 2);
    int32_t *ids = malloc((size_t)full * sizeof(int32_t)), *types = malloc((size_t)full * sizeof(int32_t));
    if (!ids || !types) return die("%s", "out of memory");
    ids[T] = canao_tok_cls_id(tok), types[T++] = 0;
    for (int i = 0; i < na; i++) ids[T] = a[i], types[T++] = 0;
    ids[T] = canao_tok_sep_id(tok), types[T++] = 0;
    if (pair) {
        for (int i = 0; i < nb; i++) ids[T] = b[i], types[T++] = 1;
        ids[T] = canao_tok_sep_id(tok), types[T++] = 1;
    }
    if (T > max) T = max; /* longer inputs are cut at the end, as the Python apps do */
    if (canao_model_encode(m, ids, types, NULL, T) != CANAO_OK)
        return die("the model refused the input: %s", canao_model_error(m));
    const float *out;
    long count;
    canao_model_output(m, 0, &out, &count);
    if (embed) { /* mean of the last hidden states, L2-normalised (sentence-transformers' recipe) */
        long hidden = count / T;
        double norm = 0;
        float *v = calloc((size_t)hidden, sizeof(float));
        if (!v) return die("%s", "out of memory");
        for (int t = 0; t < T; t++)
            for (long h = 0; h < hidden; h++) v[h] += out[t * hidden + h] / (float)T;
        for (long h = 0; h < hidden; h++) norm += (double)v[h] * v[h];
        norm = sqrt(norm) > 1e-12 ? sqrt(norm) : 1e-12;
        printf("{\"embedding\": [");
        for (long h = 0; h < hidden; h++) printf("%s%.7g", h ? ", " : "", v[h] / norm);
        printf("], \"tokens\": %d, \"ms\": %.3f}\n", T, now_ms() - t0);
        free(v);
    } else {
        int best = 0;
        for (long i = 1; i < count; i++)
            if (out[i] > out[best]) best = (int)i;
        printf("{\"label\": ");
        if (best < cfg->n_labels && cfg->labels[best][0]) json_string(stdout, cfg->labels[best], strlen(cfg->labels[best]));
        else printf("\"%d\"", best);
        printf(", \"index\": %d, \"logits\": [", best);
        for (long i = 0; i < count; i++) printf("%s%.7g", i ? ", " : "", out[i]);
        printf("], \"tokens\": %d, \"ms\": %.3f}\n", T, now_ms() - t0);
    }
    free(a), free(as), free(ae), free(b), free(bs), free(be), free(ids), free(types);
    return 0;
}

/* ------------------------------------------------------------------ generation */

typedef struct { int max_new, top_k; double temperature, top_p, penalty; uint64_t seed; } gen_t;

static double uniform(uint64_t *state) { /* xorshift64*, in [0, 1) */
    *state ^= *state >> 12, *state ^= *state << 25, *state ^= *state >> 27;
    return (double)((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int cmp_desc(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

/* The next token: repetition penalty (CTRL) -> temperature -> top-k -> top-p, greedy at temperature 0. */
static int pick(float *logits, int vocab, const int32_t *context, int n_context, const gen_t *g, uint64_t *rng,
                float *scratch) {
    for (int i = 0; i < n_context; i++) {
        float *x = &logits[context[i]];
        if (g->penalty != 1.0 && *x == *x) *x = *x > 0 ? *x / (float)g->penalty : *x * (float)g->penalty;
    }
    int best = 0;
    for (int v = 1; v < vocab; v++)
        if (logits[v] > logits[best]) best = v;
    if (g->temperature <= 0.0) return best;
    double max = logits[best], total = 0;
    float cutoff = -INFINITY;
    if (g->top_k > 0 && g->top_k < vocab) {
        memcpy(scratch, logits, (size_t)vocab * sizeof(float));
        qsort(scratch, (size_t)vocab, sizeof(float), cmp_desc);
        cutoff = scratch[g->top_k - 1];
    }
    for (int v = 0; v < vocab; v++) {
        scratch[v] = logits[v] >= cutoff ? (float)exp((logits[v] - max) / g->temperature) : 0.0f;
        total += scratch[v];
    }
    if (g->top_p < 1.0) { /* keep the most likely tokens until their mass reaches top_p */
        float *sorted = malloc((size_t)vocab * sizeof(float));
        if (sorted) {
            memcpy(sorted, scratch, (size_t)vocab * sizeof(float));
            qsort(sorted, (size_t)vocab, sizeof(float), cmp_desc);
            double mass = 0;
            float floor_p = sorted[0];
            for (int v = 0; v < vocab && mass < g->top_p * total; v++) mass += sorted[v], floor_p = sorted[v];
            total = 0;
            for (int v = 0; v < vocab; v++) {
                if (scratch[v] < floor_p) scratch[v] = 0.0f;
                total += scratch[v];
            }
            free(sorted);
        }
    }
    double r = uniform(rng) * total;
    for (int v = 0; v < vocab; v++) {
        r -= scratch[v];
        if (r < 0 && scratch[v] > 0) return v;
    }
    return best;
}

/* Bytes of `text` that form complete UTF-8 characters (a byte-level token may end inside one). */
static size_t complete_utf8(const char *text, size_t len) {
    size_t i = len;
    while (i > 0 && len - i < 4 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return len;
    unsigned char lead = (unsigned char)text[i - 1];
    size_t n = (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
    return n > 1 && len - (i - 1) < n ? i - 1 : len;
}

static int run_generate(canao_model *m, const canao_tokenizer *tok, const char *prompt, const gen_t *g) {
    double t0 = now_ms(), first_ms = -1;
    int32_t *p, *ps, *pe;
    int np;
    if (encode(tok, prompt, &p, &ps, &pe, &np)) return 2;
    int max = canao_model_max_positions(m), vocab = canao_model_vocab_size(m);
    int keep = max - g->max_new > 1 ? max - g->max_new : 1, dropped = 0;
    if (np == 0) { /* an empty prompt starts from the end-of-text token, as the Python app */
        p[0] = 0;
        for (int32_t v = 0; v < canao_tok_vocab_size(tok); v++)
            if (canao_tok_token(tok, v) && strcmp(canao_tok_token(tok, v), "<|endoftext|>") == 0) p[0] = v;
        np = 1;
    }
    if (np > keep) dropped = np - keep, memmove(p, p + dropped, (size_t)keep * sizeof(int32_t)), np = keep;
    int32_t *context = malloc((size_t)(max + 1) * sizeof(int32_t));
    float *logits = malloc((size_t)vocab * sizeof(float)), *scratch = malloc((size_t)vocab * sizeof(float));
    size_t text_cap = 1 << 16;
    char *text = malloc(text_cap);
    if (!context || !logits || !scratch || !text) return die("%s", "out of memory");
    memcpy(context, p, (size_t)np * sizeof(int32_t));
    canao_model_reset(m);
    if (canao_model_append(m, p, np) != CANAO_OK) return die("the model refused the prompt: %s", canao_model_error(m));
    uint64_t rng = g->seed * 0x9E3779B97F4A7C15ULL + 1;
    int n_context = np, new_tokens = 0;
    size_t emitted = 0, len = 0;
    const char *reason = "max_new_tokens";
    while (new_tokens < g->max_new) {
        const float *out;
        long count;
        canao_model_output(m, 0, &out, &count);
        memcpy(logits, out + count - vocab, (size_t)vocab * sizeof(float));
        int token = pick(logits, vocab, context, n_context, g, &rng, scratch);
        context[n_context++] = token;
        new_tokens++;
        if (first_ms < 0) first_ms = now_ms() - t0;
        size_t needed = 0;
        while (canao_tok_decode(tok, context + np, new_tokens, 0, text, text_cap, &needed) == CANAO_TOK_ECAPACITY) {
            char *more = realloc(text, needed + 1);
            if (!more) return die("%s", "out of memory");
            text = more, text_cap = needed + 1;
        }
        len = needed;
        size_t ready = complete_utf8(text, len);
        if (ready > emitted) {
            printf("{\"text\": ");
            json_string(stdout, text + emitted, ready - emitted);
            printf(", \"id\": %d}\n", token);
            fflush(stdout);
            emitted = ready;
        }
        if (canao_model_context_length(m) >= max) { reason = "context_full"; break; }
        if (new_tokens < g->max_new && canao_model_append(m, &context[n_context - 1], 1) != CANAO_OK)
            return die("decoding failed: %s", canao_model_error(m));
    }
    printf("{\"done\": true, \"text\": ");
    json_string(stdout, text, new_tokens ? len : 0);
    printf(", \"ids\": [");
    for (int i = 0; i < new_tokens; i++) printf("%s%d", i ? ", " : "", context[np + i]);
    double total = now_ms() - t0;
    printf("], \"prompt_tokens\": %d, \"prompt_tokens_dropped\": %d, \"new_tokens\": %d, \"stop_reason\": \"%s\", "
           "\"time_to_first_token_ms\": %.3f, \"ms\": %.3f}\n",
           np, dropped, new_tokens, reason, first_ms, total);
    free(p), free(ps), free(pe), free(context), free(logits), free(scratch), free(text);
    return 0;
}

/* ------------------------------------------------------------------ bench */

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Median and 90th percentile of `reps` forwards of T tokens (ids cycle through the vocabulary; encoders one
 * sequence, decoders a prompt of T tokens), after 3 warm-up calls. */
static int run_bench(canao_model *m, int T, int reps, double open_ms) {
    int max = canao_model_max_positions(m), vocab = canao_model_vocab_size(m);
    if (T < 1 || T > max) return die("--tokens must lie in 1..max positions (%s)", "see model.json");
    int32_t *ids = malloc((size_t)T * sizeof(int32_t));
    double *ms = malloc((size_t)reps * sizeof(double));
    if (!ids || !ms) return die("%s", "out of memory");
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((1000 + 7 * t) % vocab);
    for (int k = -3; k < reps; k++) {
        double t0 = now_ms();
        int rc = canao_model_kind(m) == CANAO_DECODER ? (canao_model_reset(m), canao_model_append(m, ids, T))
                                                      : canao_model_encode(m, ids, NULL, NULL, T);
        if (rc != CANAO_OK) return die("the model refused the input: %s", canao_model_error(m));
        if (k >= 0) ms[k] = now_ms() - t0;
    }
    qsort(ms, (size_t)reps, sizeof(double), cmp_double);
    printf("{\"simd\": \"%s\", \"tokens\": %d, \"reps\": %d, \"open_ms\": %.3f, \"median_ms\": %.4f, "
           "\"p90_ms\": %.4f, \"min_ms\": %.4f}\n",
           canao_model_simd(m), T, reps, open_ms, ms[reps / 2], ms[(reps * 9) / 10], ms[0]);
    free(ids), free(ms);
    return 0;
}

/* ------------------------------------------------------------------ main */

static int number(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static const char *usage =
    "usage: canao-model-run [-d DIR] [--threads N] qa -q QUESTION -c CONTEXT | classify -t TEXT [-p PAIR] | "
    "embed -t TEXT | generate -t PROMPT [-n N] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] "
    "[--seed S] | bench [--tokens T] [--reps N]   (a text of \"-\" is read from stdin)";

int main(int argc, char **argv) {
    const char *dir = ".", *mode = NULL, *text = NULL, *pair = NULL, *question = NULL, *context = NULL;
    double threads = 1, max_length = 384, stride = 128, max_answer = 30, tokens = 128, reps = 30;
    gen_t g = {32, 0, 0.0, 1.0, 1.0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        int takes = 1;
        if (!strcmp(a, "qa") || !strcmp(a, "classify") || !strcmp(a, "embed") || !strcmp(a, "generate") ||
            !strcmp(a, "bench")) {
            if (mode) return die("two modes given (%s)", a);
            mode = a, takes = 0;
        } else if (!v) return die("%s needs a value", a);
        else if (!strcmp(a, "-d")) dir = v;
        else if (!strcmp(a, "-t")) text = v;
        else if (!strcmp(a, "-p")) pair = v;
        else if (!strcmp(a, "-q")) question = v;
        else if (!strcmp(a, "-c")) context = v;
        else if (!strcmp(a, "--threads") && !number(v, 1, 1024, &x)) threads = x;
        else if (!strcmp(a, "--max-length") && !number(v, 16, 100000, &x)) max_length = x;
        else if (!strcmp(a, "--doc-stride") && !number(v, 1, 100000, &x)) stride = x;
        else if (!strcmp(a, "--max-answer-tokens") && !number(v, 1, 512, &x)) max_answer = x;
        else if (!strcmp(a, "--tokens") && !number(v, 1, 100000, &x)) tokens = x;
        else if (!strcmp(a, "--reps") && !number(v, 1, 100000, &x)) reps = x;
        else if (!strcmp(a, "-n") && !number(v, 1, 1e6, &x)) g.max_new = (int)x;
        else if (!strcmp(a, "--temperature") && !number(v, 0, 100, &x)) g.temperature = x;
        else if (!strcmp(a, "--top-k") && !number(v, 0, 1e9, &x)) g.top_k = (int)x;
        else if (!strcmp(a, "--top-p") && !number(v, 1e-9, 1, &x)) g.top_p = x;
        else if (!strcmp(a, "--repetition-penalty") && !number(v, 1e-3, 100, &x)) g.penalty = x;
        else if (!strcmp(a, "--seed") && !number(v, 0, 1.8e19, &x)) g.seed = (uint64_t)x;
        else return die("bad option or value: %s", a);
        i += takes;
    }
    if (!mode) return die("%s", usage);
    config_t cfg;
    if (read_config(dir, &cfg)) return 2;
    const char *need = !strcmp(mode, "qa") ? "qa" : !strcmp(mode, "classify") ? "classification"
                      : !strcmp(mode, "embed") ? "backbone" : !strcmp(mode, "bench") ? cfg.task : "lm";
    if (strcmp(cfg.task, need) != 0) return die("this model's task is %s; use the matching mode", cfg.task);
    char *stdin_text = NULL;
    const char **slots[] = {&text, &pair, &question, &context};
    for (int s = 0; s < 4; s++)
        if (*slots[s] && !strcmp(*slots[s], "-")) {
            if (stdin_text) return die("%s", "only one text can come from stdin");
            if (!(stdin_text = read_stream(stdin))) return die("%s", "cannot read stdin");
            *slots[s] = stdin_text;
        }
    int bench = !strcmp(mode, "bench"), rc;
    /* from here on every exit goes through `done`, which frees the text read from stdin */
    if (!bench && (!strcmp(mode, "qa") ? !question || !context : !text)) {
        rc = die("%s", usage);
        goto done;
    }
    char path[4096], msg[512];
    canao_model *m;
    canao_tokenizer *tok;
    snprintf(path, sizeof path, "%s/weights.bin", dir);
    double t_open = now_ms();
    if (canao_model_open(path, &m, msg, sizeof msg) != CANAO_OK) {
        rc = die("%s", msg);
        goto done;
    }
    t_open = now_ms() - t_open;
    if (bench) {
        canao_model_set_threads(m, (int)threads);
        rc = run_bench(m, (int)tokens, (int)reps, t_open);
        canao_model_free(m);
        goto done;
    }
    snprintf(path, sizeof path, "%s/tokenizer.bin", dir);
    rc = canao_tok_load(path, &tok);
    if (rc != CANAO_TOK_OK) {
        canao_model_free(m);
        rc = die("cannot load the tokenizer: %s", canao_tok_error(rc));
        goto done;
    }
    canao_model_set_threads(m, (int)threads);
    int limit = canao_model_max_positions(m) < (int)max_length ? canao_model_max_positions(m) : (int)max_length;
    if (!strcmp(mode, "qa")) rc = run_qa(m, tok, question, context, limit, (int)stride, (int)max_answer);
    else if (!strcmp(mode, "generate")) rc = run_generate(m, tok, text, &g);
    else rc = run_sequence(m, tok, &cfg, text, pair, !strcmp(mode, "embed"));
    canao_tok_free(tok);
    canao_model_free(m);
done:
    free(stdin_text);
    return rc;
}
