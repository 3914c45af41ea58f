"""Walking an ONNX model's graphs: the main graph and every subgraph (If/Loop/Scan bodies)."""

from __future__ import annotations

import onnx


def all_graphs(model: onnx.ModelProto) -> list[onnx.GraphProto]:
    """The main graph, then every subgraph held in a node attribute, at any depth."""
    graphs, pending = [], [model.graph]
    while pending:
        graph = pending.pop()
        graphs.append(graph)
        for node in graph.node:
            for attribute in node.attribute:
                pending += ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
    return graphs
