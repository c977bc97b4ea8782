"""plan_memory: live buffers never overlap, dead ones are reused, outputs survive."""

from __future__ import annotations

from canao.compiler.passes.pipeline import run_pipeline
from canao.compiler.passes.plan_memory import _size_floats
from tests.compiler.graphs import DEC, ENC, lowered


def _check_no_live_overlap(graph):
    plan = graph.meta["memory_plan"]
    last_use, birth = {}, {}
    for i, node in enumerate(graph.nodes):
        if node.output in plan:
            birth[node.output] = i
            last_use[node.output] = i
        for v in node.inputs:
            if v in plan:
                last_use[v] = i
    for v in graph.outputs:
        last_use[v] = len(graph.nodes)
    values = list(plan)
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            live_together = not (last_use[a] < birth[b] or last_use[b] < birth[a])
            apart = plan[a] + _size_floats(graph, a) <= plan[b] or plan[b] + _size_floats(graph, b) <= plan[a]
            assert apart or not live_together, (a, b)


def test_encoder_plan_is_valid_and_reuses():
    graph = run_pipeline(lowered(ENC))
    _check_no_live_overlap(graph)
    assert graph.meta["peak_activation_bytes"] < graph.meta["unplanned_activation_bytes"] / 3


def test_decoder_plan_excludes_cache_views():
    graph = run_pipeline(lowered(DEC, "lm"))
    _check_no_live_overlap(graph)
    assert not any(name.endswith(("_k_all", "_v_all")) for name in graph.meta["memory_plan"])
