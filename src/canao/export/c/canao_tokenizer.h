/* canao's C tokenizer: WordPiece (BERT, cased or uncased) and byte-level BPE (GPT-2) from a tokenizer.bin
 * written by canao.export.tokenizer_data, equal in ids to the `tokenizers` library. Dependency-free C99.
 *
 * Every function returns 0 or a negative CANAO_TOK_E* code and never aborts; canao_tok_error()
 * names a code. Offsets are byte offsets into the caller's UTF-8 text.
 */
#ifndef CANAO_TOKENIZER_H
#define CANAO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CANAO_TOK_OK = 0,
    CANAO_TOK_EIO = -1,        /* the file cannot be read */
    CANAO_TOK_EFORMAT = -2,    /* not a tokenizer.bin of this version, or truncated */
    CANAO_TOK_ENOMEM = -3,     /* out of memory */
    CANAO_TOK_EUTF8 = -4,      /* the text is not valid UTF-8 */
    CANAO_TOK_ECAPACITY = -5,  /* more tokens than the output arrays hold (the count needed is returned too) */
    CANAO_TOK_EARG = -6        /* a NULL pointer or negative size */
};

typedef struct canao_tokenizer canao_tokenizer;

/* Load from a file, or from a buffer of `size` bytes (copied). */
int canao_tok_load(const char *path, canao_tokenizer **out);
int canao_tok_load_buffer(const void *data, size_t size, canao_tokenizer **out);
void canao_tok_free(canao_tokenizer *tok);
const char *canao_tok_error(int code);

/* Token ids of `text` (no [CLS]/[SEP]) with byte offsets [starts[i], ends[i]) into the text (for
 * byte-level BPE a token may end inside a multi-byte character). `starts`
 * and `ends` may be NULL. Returns the number of tokens, or a negative code; with CANAO_TOK_ECAPACITY,
 * *needed holds the count that would have fitted (if `needed` is not NULL). */
int canao_tok_encode(const canao_tokenizer *tok, const char *text, size_t len, int32_t *ids, int32_t *starts,
                     int32_t *ends, int capacity, int *needed);

int32_t canao_tok_cls_id(const canao_tokenizer *tok); /* -1 when the tokenizer has none */
int32_t canao_tok_sep_id(const canao_tokenizer *tok);
int32_t canao_tok_vocab_size(const canao_tokenizer *tok);
/* The text of a token id (NUL-terminated), or NULL for an id out of range. */
const char *canao_tok_token(const canao_tokenizer *tok, int32_t id);

/* The text of `n` ids, NUL-terminated in `out` (cap bytes): byte-level BPE maps each symbol back to its byte
 * (the exact inverse of encoding; a token may hold part of a character, so decode whole sequences), WordPiece
 * joins words with spaces and glues "##" pieces on. Added tokens ([CLS], <|endoftext|>) are skipped when
 * skip_added is non-zero. Returns the byte count, or a negative code (CANAO_TOK_ECAPACITY: *needed bytes
 * plus the NUL are needed; CANAO_TOK_EARG: an id out of range). */
int canao_tok_decode(const canao_tokenizer *tok, const int32_t *ids, int n, int skip_added, char *out, size_t cap,
                     size_t *needed);

#ifdef __cplusplus
}
#endif
#endif
