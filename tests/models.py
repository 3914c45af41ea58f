"""Small ONNX models built in tests, for contract checks and quick packaging jobs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def classifier(
    batch: int | str = "N", size: int | str = 64, softmax: bool = True, channels: int = 3, classes: int = 2
) -> onnx.ModelProto:
    """conv → relu → global average pool → gemm (→ softmax): a [N, classes] classifier."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3, "w")
    fc = numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits" if softmax else "scores"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])]
    return _model(nodes, inputs, outputs, [w, fc])


def anomalib_like(score_shape: list, with_map: bool = True) -> onnx.ModelProto:
    """pred_score from a global pool; optional anomaly_map [1,1,64,64]."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["pred_score"]),
    ]
    shape = numpy_helper.from_array(np.array(score_shape, dtype=np.int64), "shape")
    outputs = [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, score_shape)]
    if with_map:
        nodes.append(helper.make_node("ReduceMean", ["input"], ["anomaly_map"], axes=[1], keepdims=1))
        outputs.append(helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 64, 64]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])]
    return _model(nodes, inputs, outputs, [shape])


def sqrt_score(size: int = 64) -> onnx.ModelProto:
    """pred_score = sqrt(mean(input) + 1): finite for ordinary images, NaN for a black one (mean ≈ −2 after
    ImageNet normalisation). A model that misbehaves on some inputs, for the agent's INTERNAL path."""
    one = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")
    shape = numpy_helper.from_array(np.array([1], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=0),
        helper.make_node("Add", ["m", "one"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["root"]),
        helper.make_node("Reshape", ["root", "shape"], ["pred_score"]),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])]
    outputs = [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [1])]
    return _model(nodes, inputs, outputs, [one, shape])
