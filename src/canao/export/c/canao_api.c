/* canao_api.c: the model handle over the generated model, compiled for one or more SIMD levels
 * (canao_dispatch.h). See canao_api.h.
 *
 * Build this file WITHOUT SIMD flags: it checks the CPU before any vector code runs. weights.bin holds one
 * section per level (each behind its own checked header), since the packed panels differ per level.
 */
#define _DEFAULT_SOURCE /* MAP_POPULATE */
#define _POSIX_C_SOURCE 200112L
#include "canao_api.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canao_dispatch.h"

#define HEADER_BYTES 64
#define MAGIC "CANAOWB1"
#define ERR_CAP 256

struct canao_model {
    const canao_level *L; /* the SIMD level running this model */
    const float *weights; /* 64-byte aligned: inside `map`, or an owned copy (owned_weights) */
    float *owned_weights;
    void *map;            /* the mapped weights file (canao_model_open), or NULL */
    size_t map_size;
    float *arena;    /* 64-byte aligned */
    float **caches;  /* decoder KV caches, one per num_caches() */
    int n_caches;
    int32_t *types;  /* scratch: zero type ids and the additive mask for one sequence */
    float *mask;
    int past;        /* decoder: tokens in the context */
    int last_T;      /* the last call's T and past, for output sizes (-1: no successful call yet) */
    int last_past;
    char error[ERR_CAP];
};

const char *canao_strerror(int code) {
    switch (code) {
    case CANAO_OK: return "ok";
    case CANAO_EARG: return "invalid argument";
    case CANAO_EIO: return "cannot read the weights file";
    case CANAO_EFORMAT: return "not a canao weights file of this version, or truncated or damaged";
    case CANAO_EMISMATCH: return "the weights belong to another model or SIMD level";
    case CANAO_ENOMEM: return "out of memory";
    case CANAO_ECPU: return "this CPU lacks the SIMD instructions the library was built for";
    case CANAO_EINPUT: return "input out of range";
    case CANAO_EKIND: return "wrong call for this kind of model (encoder or decoder)";
    case CANAO_EFULL: return "the decoder's context is full";
    default: return "unknown error";
    }
}

static int fail(char *msg, size_t cap, int code, const char *fmt, ...) {
    if (msg && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int model_fail(canao_model *m, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof m->error, fmt, ap);
    va_end(ap);
    return code;
}

static void *aligned_floats(long n) {
    void *p = NULL;
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) / 64 * 64;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}

static uint32_t read_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t read_u64(const unsigned char *p) { return (uint64_t)read_u32(p) | (uint64_t)read_u32(p + 4) << 32; }

/* The weights' checksum (canao.export.weights_file): sum over 32-bit words w_i of w_i * (2i + 1), mod 2^64. Any
 * change of one word changes it (odd multipliers are invertible mod 2^64). */
static uint64_t checksum(const unsigned char *data, uint64_t words) {
    /* Little-endian CPUs only (checked at open), so a word is a native load; four independent sums keep the
     * multiplies in flight: the check costs a fraction of reading the file. */
    uint64_t sums[4] = {0, 0, 0, 0}, i = 0;
    for (; i + 4 <= words; i += 4) {
        uint32_t w[4];
        memcpy(w, data + 4 * i, sizeof w);
        for (int k = 0; k < 4; ++k) sums[k] += (uint64_t)w[k] * (2 * (i + (uint64_t)k) + 1);
    }
    for (; i < words; ++i) sums[0] += (uint64_t)read_u32(data + 4 * i) * (2 * i + 1);
    return sums[0] + sums[1] + sums[2] + sums[3];
}

/* Whether this CPU (and its OS) runs the code of `level`: each CPUID bit it needs is set, and the OS saves the
 * register state those instructions use (XCR0, read with xgetbv once OSXSAVE says it may be). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static unsigned long long xcr0(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* no OSXSAVE: no xgetbv */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int cpu_has(const canao_level *level) {
    unsigned long long os = xcr0();
    for (int i = 0; i < level->n_cpu_needs; i++) {
        const canao_cpuid_bit *need = &level->cpu_needs[i];
        unsigned r[4];
        if (!__get_cpuid_count(need->leaf, need->subleaf, &r[0], &r[1], &r[2], &r[3])) return 0;
        if (!(r[need->reg] & (1u << need->bit)) || (os & need->xcr0) != need->xcr0) return 0;
    }
    return 1;
}
#else
static int cpu_has(const canao_level *level) { return level->n_cpu_needs == 0; /* the architecture's baseline */ }
#endif

/* The 16-byte, NUL-padded SIMD field of a section header. */
static void level_field(const char *name, char out[16]) {
    memset(out, 0, 16);
    memcpy(out, name, strlen(name) < 16 ? strlen(name) : 16);
}

/* The size of the section at h (header + floats), or 0 with an error when its header does not parse. */
static size_t section_bytes(const unsigned char *h, size_t size, int *rc, char *msg, size_t cap) {
    if (size < HEADER_BYTES || memcmp(h, MAGIC, 8) != 0) {
        *rc = fail(msg, cap, CANAO_EFORMAT, "not a canao weights file (no %s header)", MAGIC);
        return 0;
    }
    if (read_u32(h + 8) != HEADER_BYTES) {
        *rc = fail(msg, cap, CANAO_EFORMAT, "unknown weights header size %u", (unsigned)read_u32(h + 8));
        return 0;
    }
    uint64_t floats = read_u64(h + 48), padded = (floats * 4 + HEADER_BYTES - 1) / HEADER_BYTES * HEADER_BYTES;
    if (floats > (uint64_t)(size - HEADER_BYTES) / 4 || padded > (uint64_t)(size - HEADER_BYTES)) {
        *rc = fail(msg, cap, CANAO_EFORMAT, "weights file truncated: %llu floats announced, %llu bytes left",
                   (unsigned long long)floats, (unsigned long long)(size - HEADER_BYTES));
        return 0;
    }
    return HEADER_BYTES + (size_t)padded;
}

/* Check a section (its SIMD field names L) against the code of level L. */
static int check_section(const canao_level *L, const unsigned char *h, char *msg, size_t cap) {
    uint64_t floats = read_u64(h + 48);
    if ((int)read_u32(h + 12) != L->abi_version())
        return fail(msg, cap, CANAO_EMISMATCH, "weights for model ABI %u, but the code is ABI %d",
                    (unsigned)read_u32(h + 12), L->abi_version());
    if (memcmp(h + 16, L->section_hash, 16) != 0)
        return fail(msg, cap, CANAO_EMISMATCH, "weights of graph %.16s, but the code reads graph %s",
                    (const char *)h + 16, L->section_hash);
    if (floats != (uint64_t)L->weight_floats())
        return fail(msg, cap, CANAO_EMISMATCH, "weights hold %llu floats, the model needs %ld",
                    (unsigned long long)floats, L->weight_floats());
    if (checksum(h + HEADER_BYTES, floats) != read_u64(h + 56))
        return fail(msg, cap, CANAO_EFORMAT, "weights damaged: checksum mismatch");
    return CANAO_OK;
}

/* The level to run and its section of the weights: the first level (most capable first) that the CPU runs,
 * that CANAO_SIMD names when set, and that the file has a section for. Every section is checked, used or not:
 * a file damaged anywhere is refused on every machine. */
static int pick_level(const unsigned char *data, size_t size, const canao_level **L, const unsigned char **section,
                      char *msg, size_t cap) {
    const unsigned char *end = data + size, *found[16] = {0};
    int rc = CANAO_OK;
    for (const unsigned char *p = data; p < end || p == data;) {
        size_t bytes = section_bytes(p, (size_t)(end - p), &rc, msg, cap);
        if (!bytes) return rc;
        int readers = 0; /* the levels that read this section: its own, and those sharing its panels */
        for (int i = 0; i < canao_n_levels && i < 16; i++) {
            char want[16];
            level_field(canao_levels[i].section, want);
            if (memcmp(p + 32, want, 16) != 0) continue;
            if ((rc = check_section(&canao_levels[i], p, msg, cap)) != CANAO_OK) return rc;
            found[i] = p, readers++;
        }
        if (!readers) return fail(msg, cap, CANAO_EMISMATCH, "weights for a SIMD level this library lacks");
        p += bytes;
        if (p == end) break;
    }
    const char *forced = getenv("CANAO_SIMD");
    char skipped[160] = "";
    int named = 0;
    for (int i = 0; i < canao_n_levels && i < 16; i++) {
        const canao_level *level = &canao_levels[i];
        if (forced && *forced && strcmp(forced, level->name) != 0) continue;
        named = 1;
        size_t used = strlen(skipped);
        const char *why = !cpu_has(level) ? "not on this CPU" : !found[i] ? "no weights" : NULL;
        if (!why) {
            *L = level, *section = found[i];
            return CANAO_OK;
        }
        snprintf(skipped + used, sizeof skipped - used, "%s%s (%s)", used ? ", " : "", level->name, why);
    }
    if (!named)
        return fail(msg, cap, CANAO_EARG, "CANAO_SIMD=%s names no SIMD level this library was built for", forced);
    return fail(msg, cap, CANAO_ECPU, "no SIMD level of this library can run here: %s", skipped);
}

/* A model over `data` (checked): weights used in place when `in_place` (a mapped file), else copied. */
static int open_from(const void *data, size_t size, int in_place, canao_model **out, char *msg, size_t cap) {
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) return fail(msg, cap, CANAO_EFORMAT, "big-endian CPUs are not supported");
    const canao_level *L = NULL;
    const unsigned char *section = NULL;
    int rc = pick_level((const unsigned char *)data, size, &L, &section, msg, cap);
    if (rc != CANAO_OK) return rc;
    canao_model *m = calloc(1, sizeof *m);
    if (!m) return fail(msg, cap, CANAO_ENOMEM, "out of memory");
    m->L = L;
    int T = L->max_positions();
    const float *in_file = (const float *)(const void *)(section + HEADER_BYTES);
    if (in_place && ((uintptr_t)in_file % 64) == 0) {
        m->weights = in_file;
    } else if ((m->owned_weights = aligned_floats(L->weight_floats())) != NULL) {
        memcpy(m->owned_weights, in_file, (size_t)L->weight_floats() * sizeof(float));
        m->weights = m->owned_weights;
    }
    m->arena = aligned_floats(L->arena_floats());
    m->types = calloc((size_t)T, sizeof(int32_t));
    m->mask = calloc((size_t)T, sizeof(float));
    m->n_caches = L->num_caches();
    m->caches = calloc((size_t)(m->n_caches > 0 ? m->n_caches : 1), sizeof(float *));
    int ok = m->weights && m->arena && m->types && m->mask && m->caches;
    for (int i = 0; ok && i < m->n_caches; ++i) ok = (m->caches[i] = aligned_floats(L->cache_floats(i))) != NULL;
    if (!ok) {
        canao_model_free(m);
        return fail(msg, cap, CANAO_ENOMEM, "out of memory for weights, arena or caches");
    }
    m->last_T = -1;
    *out = m;
    return CANAO_OK;
}

int canao_model_open_buffer(const void *data, size_t size, canao_model **out, char *msg, size_t cap) {
    if (msg && cap) msg[0] = '\0';
    if (!out) return fail(msg, cap, CANAO_EARG, "out is NULL");
    *out = NULL;
    if (!data) return fail(msg, cap, CANAO_EARG, "data is NULL");
    return open_from(data, size, 0, out, msg, cap);
}

/* The file is mapped read-only (pre-faulted where the system allows) and the weights run in place, sharing
 * pages with the page cache: reading it into fresh memory cost 110 ms of page faults for 91 MB here. */
int canao_model_open(const char *path, canao_model **out, char *msg, size_t cap) {
    if (msg && cap) msg[0] = '\0';
    if (!out) return fail(msg, cap, CANAO_EARG, "out is NULL");
    *out = NULL;
    if (!path) return fail(msg, cap, CANAO_EARG, "path is NULL");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(msg, cap, CANAO_EIO, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(msg, cap, CANAO_EIO, "%s: cannot open (not a regular file)", path);
    }
    size_t size = (size_t)st.st_size;
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;
#endif
    void *map = size ? mmap(NULL, size, PROT_READ, flags, fd, 0) : MAP_FAILED;
    close(fd);
    int rc;
    if (map == MAP_FAILED) {
        rc = size ? fail(msg, cap, CANAO_EIO, "cannot map the file")
                  : fail(msg, cap, CANAO_EFORMAT, "not a canao weights file (empty)");
    } else {
        rc = open_from(map, size, 1, out, msg, cap);
        if (rc == CANAO_OK) (*out)->map = map, (*out)->map_size = size;
        else munmap(map, size);
    }
    if (rc != CANAO_OK && msg && cap && strncmp(msg, path, strlen(path)) != 0) {
        char detail[ERR_CAP];
        snprintf(detail, sizeof detail, "%s", msg);
        snprintf(msg, cap, "%s: %s", path, detail);
    }
    return rc;
}

void canao_model_free(canao_model *m) {
    if (!m) return;
    for (int i = 0; m->caches && i < m->n_caches; ++i) free(m->caches[i]);
    free(m->caches);
    free(m->types);
    free(m->mask);
    free(m->arena);
    free(m->owned_weights);
    if (m->map) munmap(m->map, m->map_size);
    free(m);
}

const char *canao_model_error(const canao_model *m) { return m ? m->error : "model is NULL"; }
int canao_model_kind(const canao_model *m) { return m && m->n_caches > 0 ? CANAO_DECODER : CANAO_ENCODER; }
int canao_model_max_positions(const canao_model *m) { return m ? m->L->max_positions() : CANAO_EARG; }
int canao_model_vocab_size(const canao_model *m) { return m ? m->L->id_bound() : CANAO_EARG; }
int canao_model_num_outputs(const canao_model *m) { return m ? m->L->num_outputs() : CANAO_EARG; }
const char *canao_model_simd(const canao_model *m) { return m ? m->L->name : ""; }
int canao_model_context_length(const canao_model *m) { return m ? m->past : CANAO_EARG; }

int canao_model_set_threads(canao_model *m, int threads) {
    if (!m) return CANAO_EARG;
    if (threads < 1 || threads > 1024) return model_fail(m, CANAO_EARG, "threads must lie in 1..1024, got %d", threads);
    m->L->set_threads(threads);
    return CANAO_OK;
}

static int check_ids(canao_model *m, const char *name, const int32_t *ids, int T, int bound) {
    for (int t = 0; t < T; ++t)
        if (ids[t] < 0 || ids[t] >= bound)
            return model_fail(m, CANAO_EINPUT, "%s[%d] = %d is out of range [0, %d)", name, t, (int)ids[t], bound);
    return CANAO_OK;
}

static int run(canao_model *m, const int32_t *ids, const int32_t *types, const float *mask, int T, int past) {
    int rc = m->L->forward(m->weights, m->arena, ids, types, mask, m->caches, T, past, NULL);
    if (rc != 0) return model_fail(m, CANAO_EINPUT, "%s", m->L->error_message(rc));
    m->last_T = T;
    m->last_past = past;
    m->error[0] = '\0';
    return CANAO_OK;
}

int canao_model_encode(canao_model *m, const int32_t *ids, const int32_t *type_ids, const int32_t *keep, int T) {
    if (!m) return CANAO_EARG;
    if (m->n_caches > 0) return model_fail(m, CANAO_EKIND, "encode() is for encoders; use reset() and append()");
    if (!ids) return model_fail(m, CANAO_EARG, "ids is NULL");
    if (T < 1 || T > m->L->max_positions())
        return model_fail(m, CANAO_EINPUT, "T = %d tokens; an input holds 1 to %d", T, m->L->max_positions());
    int rc = check_ids(m, "ids", ids, T, m->L->id_bound());
    if (rc != CANAO_OK) return rc;
    for (int t = 0; t < T; ++t) {
        if (keep && keep[t] != 0 && keep[t] != 1)
            return model_fail(m, CANAO_EINPUT, "keep[%d] = %d; the mask holds 0 or 1", t, (int)keep[t]);
        m->types[t] = type_ids ? type_ids[t] : 0;
        m->mask[t] = keep && keep[t] == 0 ? -FLT_MAX : 0.0f; /* additive, as PyTorch's finfo.min */
    }
    return run(m, ids, m->types, m->mask, T, 0);
}

int canao_model_reset(canao_model *m) {
    if (!m) return CANAO_EARG;
    if (m->n_caches == 0) return model_fail(m, CANAO_EKIND, "reset() is for decoders; use encode()");
    m->past = 0;
    return CANAO_OK;
}

int canao_model_append(canao_model *m, const int32_t *ids, int T) {
    if (!m) return CANAO_EARG;
    if (m->n_caches == 0) return model_fail(m, CANAO_EKIND, "append() is for decoders; use encode()");
    if (!ids) return model_fail(m, CANAO_EARG, "ids is NULL");
    int room = m->L->max_positions() - m->past;
    if (room <= 0) return model_fail(m, CANAO_EFULL, "the context holds %d tokens; reset() it", m->past);
    if (T < 1 || T > room)
        return model_fail(m, CANAO_EINPUT, "T = %d tokens, but the context has room for 1 to %d", T, room);
    int rc = check_ids(m, "ids", ids, T, m->L->id_bound());
    if (rc != CANAO_OK) return rc;
    rc = run(m, ids, NULL, NULL, T, m->past);
    if (rc == CANAO_OK) m->past += T;
    return rc;
}

int canao_model_output(const canao_model *m, int i, const float **data, long *count) {
    if (!m || !data || !count || i < 0 || i >= m->L->num_outputs() || m->last_T < 0) return CANAO_EARG;
    long offset = m->L->output_offset(i);
    if (offset < 0) return CANAO_EARG;
    *data = m->arena + offset;
    *count = m->L->output_floats(i, m->last_T, m->last_past);
    return CANAO_OK;
}
