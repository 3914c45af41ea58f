"""Which of a model's operators TVM's ONNX importer cannot convert: checked at create-model, so such a model
is refused when it is registered instead of failing minutes into a packaging job."""

from __future__ import annotations

from collections import Counter

import onnx

from compiler.models.onnx_graphs import all_graphs

STANDARD_DOMAINS = ("", "ai.onnx")


def unsupported_operators(model: onnx.ModelProto) -> list[str]:
    """'<domain>.<op> (n nodes)' for every operator the importer has no converter for; empty when all convert."""
    # The importer's table of converters; private, but TVM is pinned to one release (pyproject.toml).
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    missing = Counter(
        node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}.{node.op_type}"
        for graph in all_graphs(model)
        for node in graph.node
        if node.domain not in STANDARD_DOMAINS or node.op_type not in known
    )
    return [f"{op} ({count} node{'s' if count > 1 else ''})" for op, count in sorted(missing.items())]
