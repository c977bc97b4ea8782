"""The IR: text and JSON round trips, verify() catching malformed graphs, the structure hash."""

from __future__ import annotations

import dataclasses

import pytest

from canao.compiler.ir import Graph, IRError, Node, TensorType, graph_hash, verify
from tests.compiler.graphs import DEC, ENC, lowered


@pytest.mark.parametrize("spec,task", [(ENC, "backbone"), (ENC, "qa"), (DEC, "lm")])
def test_json_round_trip_keeps_structure(spec, task):
    graph = lowered(spec, task)
    verify(graph)
    again = Graph.from_json(graph.to_json(), graph.constants)
    verify(again)
    assert again.to_json() == graph.to_json() and again.to_text() == graph.to_text()
    assert graph_hash(again) == graph_hash(graph)


def test_hash_follows_structure_and_meta():
    graph = lowered()
    assert graph_hash(graph.with_nodes(graph.nodes, default_mr=4)) != graph_hash(graph)
    assert graph_hash(graph.with_nodes(graph.nodes[:-1])) != graph_hash(graph)


def test_symbolic_shapes_bind_at_run_time():
    t = TensorType(("T", 8))
    assert t.concrete(5, 9, 32) == (5, 8) and TensorType(("S", "M")).concrete(5, 9, 32) == (9, 32)


def test_verify_refuses_a_dangling_input():
    graph = lowered()
    first = graph.nodes[0]
    broken = dataclasses.replace(first, inputs=("no_such_value", *first.inputs[1:]))
    with pytest.raises(IRError):
        verify(graph.with_nodes((broken, *graph.nodes[1:])))


def test_verify_refuses_a_value_without_type():
    graph = lowered()
    extra = Node("tanh", (graph.nodes[0].output,), "untyped_value", (), "")
    with pytest.raises(IRError):
        verify(graph.with_nodes((*graph.nodes, extra)))
