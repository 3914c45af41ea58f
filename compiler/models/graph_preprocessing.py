"""What a graph does to its image input before the network proper, found by walking from the input: a resize to
a fixed size, and a per-channel mean/std normalisation. anomalib 2.x exports carry both (its pre-processor is
part of the exported model), so the agent must not normalise a second time, and the size the graph resizes to is
the natural size to compile for when the input's height and width are dynamic."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

# Nodes that leave the pixels as they are (torch's exporter puts a Reshape before the pre-processor's Resize).
PASS_THROUGH = ("Reshape", "Identity", "Cast")
MAX_STEPS = 8  # the pre-processing sits right at the input; a longer walk is the network itself


@dataclass(frozen=True)
class InputPreprocessing:
    resize_to: list[int] | None  # [H, W] the graph resizes its input to first, when static
    normalises: bool  # the graph subtracts a per-channel mean and divides (or multiplies) by a per-channel scale


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    found = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            found[node.output[0]] = node.attribute[0].t
    return found


def _is_channel_constant(name: str, constants: dict[str, onnx.TensorProto]) -> bool:
    """One value per RGB channel: shape [3], [3,1,1] or [1,3,1,1]."""
    tensor = constants.get(name)
    return tensor is not None and [d for d in tensor.dims if d != 1] == [3]


def _static_spatial_size(model: onnx.ModelProto, value: str) -> list[int] | None:
    """The static [H, W] of a value, by ONNX shape inference with data propagation (anomalib's resize sizes are
    computed: the input's batch and channels concatenated with a constant [H, W])."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    for info in (*inferred.graph.value_info, *inferred.graph.output):
        if info.name == value:
            dims = info.type.tensor_type.shape.dim
            spatial = [d.dim_value if d.HasField("dim_value") else None for d in dims][-2:]
            return spatial if len(spatial) == 2 and None not in spatial else None
    return None


def input_preprocessing(model: onnx.ModelProto, input_name: str) -> InputPreprocessing:
    """Follow the image input through pass-through nodes and a resize to a mean/std normalisation, if any."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = _constants(model)
    current, resize_to = input_name, None
    for _ in range(MAX_STEPS):
        nodes = [n for n in consumers.get(current, []) if n.op_type != "Shape"]
        if len(nodes) != 1 or nodes[0].input[0] != current:
            break
        node = nodes[0]
        if node.op_type == "Resize":
            resize_to = _static_spatial_size(model, node.output[0])
        elif node.op_type == "Sub" and len(node.input) == 2 and _is_channel_constant(node.input[1], constants):
            after = consumers.get(node.output[0], [])
            normalises = (
                len(after) == 1
                and after[0].op_type in ("Div", "Mul")
                and after[0].input[0] == node.output[0]
                and _is_channel_constant(after[0].input[1], constants)
            )
            return InputPreprocessing(resize_to, normalises)
        elif node.op_type not in PASS_THROUGH:
            break
        current = node.output[0]
    return InputPreprocessing(resize_to, normalises=False)
