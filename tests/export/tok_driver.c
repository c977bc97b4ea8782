/* Test driver for the C tokenizer: argv[1] tokenizer.bin, argv[2] texts (u32 length + UTF-8 bytes each);
 * writes, per text, i32 count (or a negative error code) then count x (id, start, end) to stdout. */
#include <stdio.h>
#include <stdlib.h>

#include "canao_tokenizer.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s tokenizer.bin texts.bin\n", argv[0]); return 2; }
    canao_tokenizer *tok;
    int e = canao_tok_load(argv[1], &tok);
    if (e) { fprintf(stderr, "load: %s\n", canao_tok_error(e)); return 3; }
    FILE *in = fopen(argv[2], "rb");
    if (!in) { fprintf(stderr, "cannot open %s\n", argv[2]); return 2; }
    int cap = 1 << 16;
    int32_t *ids = malloc(sizeof(int32_t) * cap), *st = malloc(sizeof(int32_t) * cap), *en = malloc(sizeof(int32_t) * cap);
    char *text = NULL;
    size_t text_cap = 0;
    unsigned char head[4];
    while (fread(head, 1, 4, in) == 4) {
        size_t n = head[0] | head[1] << 8 | head[2] << 16 | (size_t)head[3] << 24;
        if (n + 1 > text_cap) { text_cap = n + 1; text = realloc(text, text_cap); }
        if (fread(text, 1, n, in) != n) { fprintf(stderr, "truncated input\n"); return 2; }
        int needed = 0;
        int count = canao_tok_encode(tok, text, n, ids, st, en, cap, &needed);
        int32_t c = count;
        fwrite(&c, 4, 1, stdout);
        for (int i = 0; i < count; i++) {
            fwrite(&ids[i], 4, 1, stdout); fwrite(&st[i], 4, 1, stdout); fwrite(&en[i], 4, 1, stdout);
        }
    }
    fclose(in);
    free(ids); free(st); free(en); free(text);
    canao_tok_free(tok);
    return 0;
}
