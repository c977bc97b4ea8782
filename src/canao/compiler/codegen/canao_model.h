/* canao_model.h: the C ABI of one generated canao model (kernel.c), for programs linked with it.
 *
 * A generated model holds its graph as code; the caller owns every buffer:
 * W (the weight blob, weights.bin), the arena (canao_arena_floats() floats,
 * 64-byte aligned) and, for decoders, one KV cache per canao_num_caches()
 * of canao_cache_floats(i) floats. canao_forward checks its sizes and ids and
 * returns an error code (0: success) instead of touching memory out of range;
 * canao_error_message spells it. Outputs stay in the arena: output i starts at
 * canao_output_offset(i) and holds canao_output_floats(i, T, past) floats.
 * The ABI version is canao.compiler.abi.ABI_VERSION.
 */
#ifndef CANAO_MODEL_H
#define CANAO_MODEL_H

#include <stdint.h>

int canao_forward(const float *W, float *arena, const int32_t *ids, const int32_t *type_ids, const float *mask,
                  float *const *caches, int T, int past, const float *x);
const char *canao_error_message(int code);
int canao_abi_version(void);
int canao_vector_width(void);
long canao_arena_floats(void);
long canao_weight_floats(void);
const char *canao_graph_hash(void);
void canao_set_threads(int n);
double canao_op_ms(int i);

int canao_max_positions(void);
int canao_num_caches(void);
long canao_cache_floats(int i);    /* floats of KV cache i (max positions rows) */
int canao_num_outputs(void);
long canao_output_offset(int i);   /* arena offset of output i, in floats (-1: an input passed through) */
long canao_output_floats(int i, int T, int past);
int canao_id_bound(void);          /* input ids must lie in [0, bound) */
int canao_hidden_in_width(void);   /* width of the float input x of a block graph; 0: the graph reads ids */

#endif
