"""Dead-code removal: drop nodes and constants no graph output depends on.

Preconditions: none. kv_append writes the cache (state that outlives the
call), so it is always kept. Examples of dead code: the pooler of a span-QA
model, the slice_cols views that fuse_attention reads through, the
per-branch weights a merge replaced.
"""

from __future__ import annotations

from canao.compiler.ir import Graph

_SIDE_EFFECTS = frozenset({"kv_append"})


def eliminate_dead_code(graph: Graph) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if node.output in live or node.op in _SIDE_EFFECTS:
            kept.append(node)
            live.update(node.inputs)
    return graph.with_nodes(reversed(kept))
