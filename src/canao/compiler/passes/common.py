"""Small graph-rewriting helpers shared by the passes (matching single-use chains, changing attributes)."""

from __future__ import annotations

from typing import Optional

from canao.compiler.ir import Graph, Node


def single_consumer(graph: Graph, consumers: dict[str, list[Node]], value: str) -> Optional[Node]:
    """The only node reading `value`, or None if it has several readers or is a graph output."""
    readers = consumers.get(value, [])
    if len(readers) != 1 or value in graph.outputs:
        return None
    return readers[0]


def with_attrs(node: Node, **changes: object) -> Node:
    attrs = dict(node.attrs)
    attrs.update(changes)
    return Node(node.op, node.inputs, node.output, tuple(sorted(attrs.items())), node.source)
