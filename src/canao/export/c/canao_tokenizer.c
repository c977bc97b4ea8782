/* canao's C tokenizer (see canao_tokenizer.h and canao/export/tokenizer_data.py for the file format).
 *
 * Byte-level BPE (GPT-2): added tokens split from the raw text; the GPT-2 pre-tokenizer regex run over
 * probed code point classes; each piece's bytes mapped to their byte-level symbols and merged by rank.
 *
 * WordPiece, as the `tokenizers` library runs a BERT tokenizer:
 *   1. added special tokens ("[SEP]", ...) found verbatim in the raw text are kept whole;
 *   2. the rest is normalised code point by code point from the probed tables (kept, dropped, a space,
 *      padded with spaces, or mapped to another sequence), each output remembering its source bytes;
 *   3. pre-tokenised: whitespace splits and disappears, punctuation becomes a word of its own;
 *   4. each word becomes WordPiece pieces, greedy longest match first, "##" on continuations; a word
 *      longer than max_input_chars_per_word, or with no match, is [UNK].
 */
#include "canao_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_KEEP = 0, KIND_DROP = 1, KIND_SPACE = 2, KIND_PAD = 3, KIND_MAP = 4 };
enum { CLASS_OTHER = 0, CLASS_SPACE = 1, CLASS_PUNCT = 2 };

typedef struct { uint32_t lo, hi, value; } range_t;
typedef struct { uint32_t cp, offset, length; } map_t;
typedef struct { const char *text; uint32_t length; int32_t id; } added_t;

typedef struct { uint64_t key; int32_t rank, merged; } merge_t; /* key: left id << 32 | right id; rank -1: empty */

struct canao_tokenizer {
    uint32_t kind; /* 1 WordPiece, 2 byte-level BPE */
    merge_t *merges; uint32_t n_merge_slots;
    int32_t byte_ids[256]; /* the vocabulary id of each byte's symbol, -1 if missing */
    uint8_t *blob; /* the file; strings below point into it or into `strings` */
    range_t *ranges; uint32_t n_ranges;
    map_t *maps; uint32_t n_maps;
    uint32_t *pool; uint32_t pool_len;
    range_t *classes; uint32_t n_classes;
    char **vocab; uint32_t *vocab_len; uint32_t vocab_size;
    char *strings; /* NUL-terminated copies of the vocabulary */
    int32_t *slots; uint32_t n_slots; /* open-addressing hash table of vocabulary ids */
    int32_t unk, cls, sep;
    uint32_t max_chars;
    char *prefix; uint32_t prefix_len;
    added_t *added; uint32_t n_added;
};

/* ------------------------------------------------------------------ reading the file */

typedef struct { const uint8_t *p, *end; int bad; } reader_t;

static uint32_t rd_u32(reader_t *r) {
    if (r->bad || (size_t)(r->end - r->p) < 4) { r->bad = 1; return 0; }
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static const uint8_t *rd_bytes(reader_t *r, uint32_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) { r->bad = 1; return NULL; }
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

/* A count of items of `item` bytes each must fit in what is left of the file (guards the allocations). */
static int fits(const reader_t *r, uint32_t count, size_t item) {
    return !r->bad && (size_t)count <= (size_t)(r->end - r->p) / (item ? item : 1);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 1099511628211ull; }
    return h;
}

static int32_t vocab_find(const canao_tokenizer *t, const char *s, size_t n) {
    uint64_t mask = t->n_slots - 1, i = hash_bytes(s, n) & mask;
    for (;;) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->vocab_len[id] == n && memcmp(t->vocab[id], s, n) == 0) return id;
        i = (i + 1) & mask;
    }
}

static int read_ranges(reader_t *r, range_t **out, uint32_t *count) {
    *count = rd_u32(r);
    if (!fits(r, *count, 12)) return CANAO_TOK_EFORMAT;
    *out = malloc(sizeof(range_t) * (*count ? *count : 1));
    if (!*out) return CANAO_TOK_ENOMEM;
    for (uint32_t i = 0; i < *count; i++) {
        (*out)[i].lo = rd_u32(r); (*out)[i].hi = rd_u32(r); (*out)[i].value = rd_u32(r);
        if ((*out)[i].hi < (*out)[i].lo || (i && (*out)[i].lo <= (*out)[i - 1].hi)) return CANAO_TOK_EFORMAT;
    }
    return r->bad ? CANAO_TOK_EFORMAT : 0;
}

static int read_vocab(reader_t *r, canao_tokenizer *t) {
    t->vocab_size = rd_u32(r);
    if (!fits(r, t->vocab_size, 4) || t->vocab_size == 0 || t->vocab_size > (1u << 30)) return CANAO_TOK_EFORMAT;
    t->vocab = calloc(t->vocab_size, sizeof(char *));
    t->vocab_len = calloc(t->vocab_size, sizeof(uint32_t));
    if (!t->vocab || !t->vocab_len) return CANAO_TOK_ENOMEM;
    const uint8_t *start = r->p;
    size_t total = 0;
    for (uint32_t i = 0; i < t->vocab_size; i++) { /* first pass: sizes */
        uint32_t n = rd_u32(r);
        if (!rd_bytes(r, n)) return CANAO_TOK_EFORMAT;
        total += (size_t)n + 1;
    }
    t->strings = malloc(total ? total : 1);
    if (!t->strings) return CANAO_TOK_ENOMEM;
    r->p = start;
    char *w = t->strings;
    for (uint32_t i = 0; i < t->vocab_size; i++) {
        uint32_t n = rd_u32(r);
        memcpy(w, rd_bytes(r, n), n);
        w[n] = '\0';
        t->vocab[i] = w; t->vocab_len[i] = n;
        w += n + 1;
    }
    t->n_slots = 1;
    while (t->n_slots < 2 * t->vocab_size) t->n_slots <<= 1;
    t->slots = malloc(sizeof(int32_t) * t->n_slots);
    if (!t->slots) return CANAO_TOK_ENOMEM;
    memset(t->slots, 0xff, sizeof(int32_t) * t->n_slots);
    for (uint32_t i = 0; i < t->vocab_size; i++) { /* first id wins for duplicate strings, as a dict would */
        uint64_t mask = t->n_slots - 1, s = hash_bytes(t->vocab[i], t->vocab_len[i]) & mask;
        int dup = 0;
        while (t->slots[s] >= 0) {
            int32_t o = t->slots[s];
            if (t->vocab_len[o] == t->vocab_len[i] && memcmp(t->vocab[o], t->vocab[i], t->vocab_len[i]) == 0) {
                dup = 1; break;
            }
            s = (s + 1) & mask;
        }
        if (!dup) t->slots[s] = (int32_t)i;
    }
    return r->bad ? CANAO_TOK_EFORMAT : 0;
}

static int read_added(reader_t *r, canao_tokenizer *t) {
    t->n_added = rd_u32(r);
    if (!fits(r, t->n_added, 8)) return CANAO_TOK_EFORMAT;
    t->added = calloc(t->n_added ? t->n_added : 1, sizeof(added_t));
    if (!t->added) return CANAO_TOK_ENOMEM;
    for (uint32_t i = 0; i < t->n_added; i++) {
        t->added[i].id = (int32_t)rd_u32(r);
        t->added[i].length = rd_u32(r);
        t->added[i].text = (const char *)rd_bytes(r, t->added[i].length);
        if (!t->added[i].text || t->added[i].length == 0 || (uint32_t)t->added[i].id >= t->vocab_size)
            return CANAO_TOK_EFORMAT;
    }
    return 0;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

static const merge_t *find_merge(const canao_tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right, mask = t->n_merge_slots - 1;
    for (uint64_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->merges[i].rank < 0) return NULL;
        if (t->merges[i].key == key) return &t->merges[i];
    }
}

/* GPT-2's reversible map from bytes to printable code points (the symbols byte-level vocabularies use). */
static uint32_t byte_symbol(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256u + (uint32_t)n;
}

static size_t utf8_put(uint32_t cp, char *out);

static int parse_bpe(reader_t *r, canao_tokenizer *t) {
    int e = read_ranges(r, &t->classes, &t->n_classes);
    if (e || (e = read_vocab(r, t))) return e;
    uint32_t n = rd_u32(r);
    if (!fits(r, n, 12) || n > (1u << 28)) return CANAO_TOK_EFORMAT;
    t->n_merge_slots = 1;
    while (t->n_merge_slots < 2 * n + 2) t->n_merge_slots <<= 1;
    t->merges = malloc(sizeof(merge_t) * t->n_merge_slots);
    if (!t->merges) return CANAO_TOK_ENOMEM;
    for (uint32_t i = 0; i < t->n_merge_slots; i++) t->merges[i].rank = -1;
    for (uint32_t rank = 0; rank < n; rank++) {
        uint32_t a = rd_u32(r), b = rd_u32(r), m = rd_u32(r);
        if (r->bad || a >= t->vocab_size || b >= t->vocab_size || m >= t->vocab_size) return CANAO_TOK_EFORMAT;
        uint64_t key = (uint64_t)a << 32 | b, mask = t->n_merge_slots - 1, i = mix64(key) & mask;
        while (t->merges[i].rank >= 0 && t->merges[i].key != key) i = (i + 1) & mask;
        if (t->merges[i].rank < 0) t->merges[i] = (merge_t){key, (int32_t)rank, (int32_t)m}; /* first rank wins */
    }
    for (int b = 0; b < 256; b++) {
        char sym[4];
        size_t len = utf8_put(byte_symbol(b), sym);
        t->byte_ids[b] = vocab_find(t, sym, len);
    }
    if ((e = read_added(r, t))) return e;
    t->unk = -1; t->cls = -1; t->sep = -1;
    return r->bad ? CANAO_TOK_EFORMAT : 0;
}

static int parse_wordpiece(reader_t *r, canao_tokenizer *t) {
    int e = read_ranges(r, &t->ranges, &t->n_ranges);
    if (e) return e;
    t->n_maps = rd_u32(r);
    if (!fits(r, t->n_maps, 12)) return CANAO_TOK_EFORMAT;
    t->maps = malloc(sizeof(map_t) * (t->n_maps ? t->n_maps : 1));
    if (!t->maps) return CANAO_TOK_ENOMEM;
    for (uint32_t i = 0; i < t->n_maps; i++) {
        t->maps[i].cp = rd_u32(r); t->maps[i].offset = rd_u32(r); t->maps[i].length = rd_u32(r);
    }
    t->pool_len = rd_u32(r);
    if (!fits(r, t->pool_len, 4)) return CANAO_TOK_EFORMAT;
    t->pool = malloc(sizeof(uint32_t) * (t->pool_len ? t->pool_len : 1));
    if (!t->pool) return CANAO_TOK_ENOMEM;
    for (uint32_t i = 0; i < t->pool_len; i++) t->pool[i] = rd_u32(r);
    for (uint32_t i = 0; i < t->n_maps; i++)
        if ((uint64_t)t->maps[i].offset + t->maps[i].length > t->pool_len || (i && t->maps[i].cp <= t->maps[i - 1].cp))
            return CANAO_TOK_EFORMAT;
    if ((e = read_ranges(r, &t->classes, &t->n_classes)) || (e = read_vocab(r, t))) return e;
    t->unk = (int32_t)rd_u32(r);
    t->max_chars = rd_u32(r);
    t->prefix_len = rd_u32(r);
    const uint8_t *prefix = rd_bytes(r, t->prefix_len);
    if (!prefix || (uint32_t)t->unk >= t->vocab_size) return CANAO_TOK_EFORMAT;
    t->prefix = malloc(t->prefix_len + 1);
    if (!t->prefix) return CANAO_TOK_ENOMEM;
    memcpy(t->prefix, prefix, t->prefix_len);
    t->prefix[t->prefix_len] = '\0';
    if ((e = read_added(r, t))) return e;
    uint32_t cls = rd_u32(r), sep = rd_u32(r);
    if (r->bad) return CANAO_TOK_EFORMAT;
    t->cls = cls < t->vocab_size ? (int32_t)cls : -1;
    t->sep = sep < t->vocab_size ? (int32_t)sep : -1;
    return 0;
}

static int parse(canao_tokenizer *t, size_t size) {
    reader_t r = {t->blob, t->blob + size, 0};
    const uint8_t *magic = rd_bytes(&r, 4);
    if (!magic || memcmp(magic, "CNTK", 4) != 0 || rd_u32(&r) != 1) return CANAO_TOK_EFORMAT;
    t->kind = rd_u32(&r);
    if (t->kind == 1) return parse_wordpiece(&r, t);
    if (t->kind == 2) return parse_bpe(&r, t);
    return CANAO_TOK_EFORMAT;
}

int canao_tok_load_buffer(const void *data, size_t size, canao_tokenizer **out) {
    if (!data || !out) return CANAO_TOK_EARG;
    *out = NULL;
    canao_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return CANAO_TOK_ENOMEM;
    t->blob = malloc(size ? size : 1);
    if (!t->blob) { free(t); return CANAO_TOK_ENOMEM; }
    memcpy(t->blob, data, size);
    int e = parse(t, size);
    if (e) { canao_tok_free(t); return e; }
    *out = t;
    return 0;
}

int canao_tok_load(const char *path, canao_tokenizer **out) {
    if (!path || !out) return CANAO_TOK_EARG;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return CANAO_TOK_EIO;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return CANAO_TOK_EIO; }
    uint8_t *buf = malloc((size_t)size + 1);
    if (!buf) { fclose(f); return CANAO_TOK_ENOMEM; }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    int e = got == (size_t)size ? canao_tok_load_buffer(buf, (size_t)size, out) : CANAO_TOK_EIO;
    free(buf);
    return e;
}

void canao_tok_free(canao_tokenizer *t) {
    if (!t) return;
    free(t->ranges); free(t->maps); free(t->pool); free(t->classes); free(t->vocab); free(t->vocab_len);
    free(t->strings); free(t->slots); free(t->prefix); free(t->added); free(t->merges); free(t->blob);
    free(t);
}

const char *canao_tok_error(int code) {
    switch (code) {
    case CANAO_TOK_OK: return "ok";
    case CANAO_TOK_EIO: return "the tokenizer file cannot be read";
    case CANAO_TOK_EFORMAT: return "not a canao tokenizer.bin of version 1, or truncated";
    case CANAO_TOK_ENOMEM: return "out of memory";
    case CANAO_TOK_EUTF8: return "the text is not valid UTF-8";
    case CANAO_TOK_ECAPACITY: return "more tokens than the output arrays hold";
    case CANAO_TOK_EARG: return "a required pointer is NULL or a size is invalid";
    default: return "unknown error";
    }
}

int32_t canao_tok_cls_id(const canao_tokenizer *t) { return t ? t->cls : -1; }
int32_t canao_tok_sep_id(const canao_tokenizer *t) { return t ? t->sep : -1; }
int32_t canao_tok_vocab_size(const canao_tokenizer *t) { return t ? (int32_t)t->vocab_size : 0; }
const char *canao_tok_token(const canao_tokenizer *t, int32_t id) {
    return t && id >= 0 && (uint32_t)id < t->vocab_size ? t->vocab[id] : NULL;
}

/* ------------------------------------------------------------------ encoding */

static const range_t *find_range(const range_t *r, uint32_t n, uint32_t cp) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return &r[mid];
    }
    return NULL;
}

static const map_t *find_map(const canao_tokenizer *t, uint32_t cp) {
    uint32_t lo = 0, hi = t->n_maps;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cp < t->maps[mid].cp) hi = mid;
        else if (cp > t->maps[mid].cp) lo = mid + 1;
        else return &t->maps[mid];
    }
    return NULL;
}

/* Decode one UTF-8 code point at s[*i] (strict: no overlongs, surrogates or values past U+10FFFF). */
static int utf8_next(const uint8_t *s, size_t len, size_t *i, uint32_t *cp) {
    uint8_t c = s[*i];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; *i += 1; return 0; }
    if ((c & 0xE0) == 0xC0) { n = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; v = c & 0x07; min = 0x10000; }
    else return -1;
    if (*i + n > len) return -1;
    for (size_t k = 1; k < n; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) return -1;
        v = (v << 6) | (s[*i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return -1;
    *cp = v; *i += n;
    return 0;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

typedef struct { uint32_t cp; int32_t start, end; } nchar_t; /* a normalised code point and its source bytes */

typedef struct {
    int32_t *ids, *starts, *ends;
    int capacity, count;
    char *piece; size_t piece_cap; /* scratch for WordPiece lookups */
} sink_t;

static void emit(sink_t *o, int32_t id, int32_t start, int32_t end) {
    if (o->count < o->capacity) {
        o->ids[o->count] = id;
        if (o->starts) o->starts[o->count] = start;
        if (o->ends) o->ends[o->count] = end;
    }
    o->count++;
}

/* WordPiece of one pre-tokenised word w[0..n). */
static int wordpiece(const canao_tokenizer *t, const nchar_t *w, size_t n, sink_t *o) {
    if (n == 0) return 0;
    if (n > t->max_chars) { emit(o, t->unk, w[0].start, w[n - 1].end); return 0; }
    size_t need = t->prefix_len + 4 * n + 1;
    if (need > o->piece_cap) {
        char *grown = realloc(o->piece, need);
        if (!grown) return CANAO_TOK_ENOMEM;
        o->piece = grown; o->piece_cap = need;
    }
    int first = o->count;
    size_t start = 0;
    while (start < n) {
        size_t end = n;
        int32_t found = -1;
        while (start < end) {
            size_t len = 0;
            if (start > 0) { memcpy(o->piece, t->prefix, t->prefix_len); len = t->prefix_len; }
            for (size_t k = start; k < end; k++) len += utf8_put(w[k].cp, o->piece + len);
            found = vocab_find(t, o->piece, len);
            if (found >= 0) break;
            end--;
        }
        if (found < 0) { /* no piece matches: the whole word is [UNK] */
            o->count = first;
            emit(o, t->unk, w[0].start, w[n - 1].end);
            return 0;
        }
        emit(o, found, w[start].start, w[end - 1].end);
        start = end;
    }
    return 0;
}

/* Normalise raw[from, to) into `buf` (grown as needed), then pre-tokenise and WordPiece it. */
static int encode_segment(const canao_tokenizer *t, const uint8_t *raw, size_t from, size_t to, nchar_t **buf,
                          size_t *cap, sink_t *o) {
    size_t n = 0, i = from;
    while (i < to) {
        size_t at = i;
        uint32_t cp;
        if (utf8_next(raw, to, &i, &cp)) return CANAO_TOK_EUTF8;
        const range_t *r = find_range(t->ranges, t->n_ranges, cp);
        uint32_t kind = r ? r->value : KIND_KEEP;
        const map_t *m = kind == KIND_MAP ? find_map(t, cp) : NULL;
        size_t grow = kind == KIND_PAD ? 3 : (m ? m->length : 1);
        if (n + grow > *cap) {
            size_t want = (*cap ? *cap * 2 : 256) + grow;
            nchar_t *bigger = realloc(*buf, want * sizeof(nchar_t));
            if (!bigger) return CANAO_TOK_ENOMEM;
            *buf = bigger; *cap = want;
        }
        nchar_t *b = *buf;
        int32_t s = (int32_t)at, e = (int32_t)i;
        switch (kind) {
        case KIND_DROP: break;
        case KIND_SPACE: b[n++] = (nchar_t){' ', s, e}; break;
        case KIND_PAD:
            b[n++] = (nchar_t){' ', s, e}; b[n++] = (nchar_t){cp, s, e}; b[n++] = (nchar_t){' ', s, e};
            break;
        case KIND_MAP:
            if (!m) return CANAO_TOK_EFORMAT;
            for (uint32_t k = 0; k < m->length; k++) b[n++] = (nchar_t){t->pool[m->offset + k], s, e};
            break;
        default: b[n++] = (nchar_t){cp, s, e};
        }
    }
    size_t word = 0;
    for (size_t k = 0; k <= n; k++) {
        uint32_t cls = CLASS_SPACE;
        if (k < n) {
            const range_t *c = find_range(t->classes, t->n_classes, (*buf)[k].cp);
            cls = c ? c->value : CLASS_OTHER;
        }
        if (cls == CLASS_OTHER) continue;
        int e = wordpiece(t, *buf + word, k - word, o);
        if (e) return e;
        if (cls == CLASS_PUNCT && (e = wordpiece(t, *buf + k, 1, o))) return e;
        word = k + 1;
    }
    return 0;
}

enum { BPE_OTHER = 0, BPE_LETTER = 1, BPE_NUMBER = 2, BPE_SPACE = 3 };

typedef struct { int32_t id, start, end; } sym_t;

/* BPE of one pre-token raw[from, to): byte symbols merged pair by pair, lowest rank first. */
static int bpe_piece(const canao_tokenizer *t, const uint8_t *raw, size_t from, size_t to, sym_t **buf,
                     size_t *cap, sink_t *o) {
    size_t n = 0;
    if (to - from > *cap) {
        sym_t *bigger = realloc(*buf, (to - from) * sizeof(sym_t));
        if (!bigger) return CANAO_TOK_ENOMEM;
        *buf = bigger; *cap = to - from;
    }
    sym_t *w = *buf;
    for (size_t i = from; i < to; i++) {
        int32_t id = t->byte_ids[raw[i]];
        if (id >= 0) w[n++] = (sym_t){id, (int32_t)i, (int32_t)(i + 1)}; /* a byte with no symbol is dropped */
    }
    for (;;) {
        int32_t best = -1, merged = -1, left = -1, right = -1;
        for (size_t k = 0; k + 1 < n; k++) {
            const merge_t *m = find_merge(t, w[k].id, w[k + 1].id);
            if (m && (best < 0 || m->rank < best)) {
                best = m->rank; merged = m->merged; left = w[k].id; right = w[k + 1].id;
            }
        }
        if (best < 0) break;
        size_t out = 0;
        for (size_t k = 0; k < n; k++) { /* every occurrence of the pair, left to right */
            if (k + 1 < n && w[k].id == left && w[k + 1].id == right) {
                w[out++] = (sym_t){merged, w[k].start, w[k + 1].end};
                k++;
            } else {
                w[out++] = w[k];
            }
        }
        n = out;
    }
    for (size_t k = 0; k < n; k++) emit(o, w[k].id, w[k].start, w[k].end);
    return 0;
}

static uint32_t bpe_class(const canao_tokenizer *t, uint32_t cp) {
    const range_t *c = find_range(t->classes, t->n_classes, cp);
    return c ? c->value : BPE_OTHER;
}

static int is_contraction(const uint32_t *cp, size_t i, size_t n) {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* The GPT-2 pre-tokenizer regex over code points, then BPE of each piece's bytes. */
static int encode_segment_bpe(const canao_tokenizer *t, const uint8_t *raw, size_t from, size_t to, sink_t *o) {
    size_t n = 0, i = from, cap = to - from + 1;
    uint32_t *cp = malloc(sizeof(uint32_t) * cap), *cls = malloc(sizeof(uint32_t) * cap);
    size_t *at = malloc(sizeof(size_t) * cap);
    sym_t *syms = NULL;
    size_t sym_cap = 0;
    int e = (!cp || !cls || !at) ? CANAO_TOK_ENOMEM : 0;
    while (!e && i < to) {
        at[n] = i;
        if (utf8_next(raw, to, &i, &cp[n])) { e = CANAO_TOK_EUTF8; break; }
        cls[n] = cp[n] == ' ' ? BPE_SPACE : bpe_class(t, cp[n]);
        n++;
    }
    if (!e) at[n] = to;
    for (size_t k = 0; !e && k < n;) {
        size_t end, c = (size_t)is_contraction(cp, k, n);
        if (c) {
            end = k + c;
        } else {
            uint32_t kind = cls[k];
            size_t j = k;
            if (cp[k] == ' ' && k + 1 < n && cls[k + 1] != BPE_SPACE) { kind = cls[k + 1]; j = k + 1; }
            if (kind != BPE_SPACE) {
                while (j < n && cls[j] == kind) j++;
                end = j;
            } else { /* \s+(?!\S) leaves the last space of a run before text to that text; else \s+ */
                size_t r = k;
                while (r < n && cls[r] == BPE_SPACE) r++;
                end = (r == n || r - k == 1) ? r : r - 1;
            }
        }
        e = bpe_piece(t, raw, at[k], at[end], &syms, &sym_cap, o);
        k = end;
    }
    free(cp); free(cls); free(at); free(syms);
    return e;
}

int canao_tok_encode(const canao_tokenizer *t, const char *text, size_t len, int32_t *ids, int32_t *starts,
                     int32_t *ends, int capacity, int *needed) {
    if (!t || (!text && len) || capacity < 0 || (!ids && capacity > 0) || len > (size_t)INT32_MAX)
        return CANAO_TOK_EARG;
    const uint8_t *raw = (const uint8_t *)text;
    sink_t o = {ids, starts, ends, capacity, 0, NULL, 0};
    nchar_t *buf = NULL;
    size_t cap = 0, from = 0, i = 0;
    int e = 0;
    while (i <= len && !e) { /* split at added special tokens, longest first at each position */
        uint32_t best = 0;
        int32_t id = -1;
        for (uint32_t a = 0; i < len && a < t->n_added; a++) {
            const added_t *ad = &t->added[a];
            if (ad->length > best && ad->length <= len - i && memcmp(raw + i, ad->text, ad->length) == 0) {
                best = ad->length; id = ad->id;
            }
        }
        if (id >= 0 || i == len) {
            e = t->kind == 2 ? encode_segment_bpe(t, raw, from, i, &o) : encode_segment(t, raw, from, i, &buf, &cap, &o);
            if (!e && id >= 0) emit(&o, id, (int32_t)i, (int32_t)(i + best));
            i += best ? best : 1;
            from = i;
        } else {
            i++;
        }
    }
    free(buf);
    free(o.piece);
    if (e) return e;
    if (needed) *needed = o.count;
    return o.count > capacity ? CANAO_TOK_ECAPACITY : o.count;
}

/* ------------------------------------------------------------------ decoding */

static int is_added(const canao_tokenizer *t, int32_t id) {
    for (uint32_t a = 0; a < t->n_added; a++)
        if (t->added[a].id == id) return 1;
    return 0;
}

/* Appends `len` bytes at *at when they fit; counts them either way. */
static void put_bytes(char *out, size_t cap, size_t *at, const char *src, size_t len) {
    if (*at + len < cap) memcpy(out + *at, src, len);
    *at += len;
}

int canao_tok_decode(const canao_tokenizer *t, const int32_t *ids, int n, int skip_added, char *out, size_t cap,
                     size_t *needed) {
    if (!t || (!ids && n) || n < 0 || (!out && cap)) return CANAO_TOK_EARG;
    uint8_t from_symbol[512]; /* byte-level BPE: symbol code point (< 512) -> byte */
    for (int b = 0; b < 256; b++) from_symbol[byte_symbol(b)] = (uint8_t)b;
    size_t at = 0;
    int words = 0;
    for (int k = 0; k < n; k++) {
        if (ids[k] < 0 || (uint32_t)ids[k] >= t->vocab_size) return CANAO_TOK_EARG;
        const char *s = t->vocab[ids[k]];
        size_t len = t->vocab_len[ids[k]];
        if (is_added(t, ids[k])) {
            if (skip_added) continue;
            if (t->kind == 1 && words++) put_bytes(out, cap, &at, " ", 1);
            put_bytes(out, cap, &at, s, len);
        } else if (t->kind == 2) {
            for (size_t i = 0; i < len;) {
                uint32_t cp;
                if (utf8_next((const uint8_t *)s, len, &i, &cp) || cp >= 512) return CANAO_TOK_EFORMAT;
                char byte = (char)from_symbol[cp];
                put_bytes(out, cap, &at, &byte, 1);
            }
        } else { /* WordPiece: words joined by spaces, continuation pieces glued on without their prefix */
            int cont = t->prefix_len && len >= t->prefix_len && memcmp(s, t->prefix, t->prefix_len) == 0;
            if (cont) s += t->prefix_len, len -= t->prefix_len;
            else if (words) put_bytes(out, cap, &at, " ", 1);
            words++;
            put_bytes(out, cap, &at, s, len);
        }
    }
    if (needed) *needed = at;
    if (cap) out[at < cap ? at : cap - 1] = '\0';
    return at < cap ? (int)at : CANAO_TOK_ECAPACITY;
}
