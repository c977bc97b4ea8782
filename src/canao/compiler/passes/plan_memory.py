"""Static memory planning: every activation gets an offset in one arena, reusing dead buffers.

Preconditions: nodes are in execution order. Sizes are taken at the largest
shapes the model accepts (T = S = max positions), so the plan is valid for
every call. Lifetimes are [defining node, last reading node]; graph outputs
live to the end. Buffers are placed largest first at the lowest offset that
does not overlap a placed buffer with an overlapping lifetime (the greedy
by-size strategy of TFLite's arena planner). kv_append results alias the
caller's cache and take no arena space. Writes meta: memory_plan
{value: offset in floats}, arena_floats, peak_activation_bytes and
unplanned_activation_bytes (what one buffer per value would take).
"""

from __future__ import annotations

import math

from canao.compiler.ir import Graph

ALIGN_FLOATS = 16  # 64-byte alignment: a cache line, one AVX-512 vector


def _size_floats(graph: Graph, value: str) -> int:
    m = int(graph.meta["max_positions"])
    n = math.prod(graph.types[value].concrete(m, m, m))
    return -(-n // ALIGN_FLOATS) * ALIGN_FLOATS


def plan_memory(graph: Graph) -> Graph:
    end = len(graph.nodes)
    birth, death = {}, {}
    for i, node in enumerate(graph.nodes):
        if node.op != "kv_append":
            birth[node.output] = i
            death[node.output] = i
        for value in node.inputs:
            if value in birth:
                death[value] = i
    for value in graph.outputs:
        if value in birth:
            death[value] = end
    sizes = {v: _size_floats(graph, v) for v in birth}
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, birth, death)
    plan: dict[str, int] = {}
    for value in sorted(birth, key=lambda v: (-sizes[v], birth[v])):
        offset = 0
        for o, s, _, _ in sorted((p for p in placed if not (p[3] < birth[value] or death[value] < p[2]))):
            if offset + sizes[value] <= o:
                break
            offset = max(offset, o + s)
        plan[value] = offset
        placed.append((offset, sizes[value], birth[value], death[value]))
    arena = max((o + s for o, s, _, _ in placed), default=0)
    return graph.with_nodes(
        graph.nodes,
        memory_plan=plan,
        arena_floats=arena,
        peak_activation_bytes=4 * arena,
        unplanned_activation_bytes=4 * sum(sizes.values()),
    )
