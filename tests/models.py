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


def conv_model(side: int, weight: np.ndarray, **conv_attrs: object) -> onnx.ModelProto:
    """One convolution (with bias) on a [1, CI, side, side+1] input; the width is odd on purpose (edge tiles)."""
    channels_out, channels_in = weight.shape[0], weight.shape[1] * int(conv_attrs.get("group", 1))
    bias = np.linspace(-1, 1, channels_out, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], **conv_attrs)],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels_in, side, side + 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def import_relax(model: onnx.ModelProto):
    """The model as a Relax module with its weights as constants, as the packaging pipeline imports it."""
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(model, keep_params_in_input=False)


def classifier(
    batch: int | str = "N",
    size: int | str = 64,
    softmax: bool = True,
    channels: int = 3,
    classes: int = 2,
    batch_in_reshape: bool = False,
) -> onnx.ModelProto:
    """conv → relu → global average pool → flatten → gemm (→ softmax): a [N, classes] classifier. With
    `batch_in_reshape` the flatten is a Reshape to the fixed [batch, -1], as exporters write for a traced batch."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3, "w")
    fc = numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Reshape", ["g", "rows"], ["f"])
        if batch_in_reshape
        else helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits" if softmax else "scores"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])]
    rows = [numpy_helper.from_array(np.array([batch, -1], np.int64), "rows")] if batch_in_reshape else []
    return _model(nodes, inputs, outputs, [w, fc, *rows])


def mobilenet_like(size: int = 30) -> onnx.ModelProto:
    """A MobileNet-style classifier [1, 3, size, size] → scores [1, 4]: stem conv (stride 2), depthwise 3×3 with
    ReLU6, pointwise 1×1, depthwise 5×5 stride 2 with a channel multiplier of 2, global pool, gemm, softmax."""
    rng = np.random.default_rng(7)

    def weights(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "stem"], ["s"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["s_relu"]),
        helper.make_node("Conv", ["s_relu", "dw3"], ["d"], group=16, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d", "zero", "six"], ["d_relu6"]),
        helper.make_node("Conv", ["d_relu6", "pw"], ["p"]),
        helper.make_node("Conv", ["p", "dw5"], ["q"], group=24, strides=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("GlobalAveragePool", ["q"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    initializers = [
        weights("stem", 16, 3, 3, 3),
        weights("dw3", 16, 1, 3, 3),
        weights("pw", 24, 16, 1, 1),
        weights("dw5", 48, 1, 5, 5),
        weights("fc", 4, 48),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six"),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])]
    return _model(nodes, inputs, outputs, initializers)


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


def nearest_neighbour_score(size: int = 64, bank: int = 32, k: int = 3) -> onnx.ModelProto:
    """PatchCore-style: every 8×8 patch's feature (a strided conv) against a memory bank; each patch's k nearest
    distances (TopK: TVM compiles it to the runtime's sort kernels) averaged; pred_score = a squashed maximum,
    anomaly_map = the per-patch distance grid upsampled to the input."""
    rng = np.random.default_rng(3)
    grid, channels = size // 8, 16
    constants = {
        "w": rng.standard_normal((channels, 3, 8, 8)).astype(np.float32) * 0.05,
        "memory": rng.standard_normal((channels, bank)).astype(np.float32),
        "k": np.array([k], dtype=np.int64),
        "patches": np.array([1, channels, grid * grid], dtype=np.int64),
        "grid": np.array([1, 1, grid, grid], dtype=np.int64),
        "sizes": np.array([1, 1, size, size], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["features"], strides=[8, 8]),
        helper.make_node("Reshape", ["features", "patches"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["rows"], perm=[0, 2, 1]),  # [1, P, C]
        helper.make_node("MatMul", ["rows", "memory"], ["similarity"]),  # [1, P, bank]
        helper.make_node("Neg", ["similarity"], ["distance"]),
        helper.make_node("TopK", ["distance", "k"], ["nearest", "nearest_index"], axis=2, largest=0),
        helper.make_node("ReduceMean", ["nearest"], ["patch_score"], axes=[2], keepdims=0),  # [1, P]
        helper.make_node("Reshape", ["patch_score", "grid"], ["coarse"]),
        helper.make_node("Resize", ["coarse", "", "", "sizes"], ["upsampled"], mode="linear"),
        helper.make_node("Sigmoid", ["upsampled"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["peak"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Identity", ["peak"], ["pred_score"]),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])]
    outputs = [
        helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, size, size]),
    ]
    return _model(nodes, inputs, outputs, [numpy_helper.from_array(v, n) for n, v in constants.items()])


def anomalib_with_own_decisions(
    size: int = 64, image_threshold: float = 0.6, pixel_threshold: float = 0.7, dynamic: bool = False, normalise=True
):
    """anomalib 2.x's export convention with thresholds that are not 0.5 (what a non-default sensitivity bakes
    in). Like anomalib's exports, the graph normalises its 0..1 input itself (ImageNet mean/std; `normalise`) and,
    `dynamic`, takes any height and width and resizes to `size` first. anomaly_map = sigmoid of a smoothed
    red − green difference, pred_score = its maximum, pred_label = pred_score ≥ image_threshold, pred_mask =
    anomaly_map ≥ pixel_threshold."""
    kernel = np.zeros((1, 3, 5, 5), dtype=np.float32)
    kernel[0, 0], kernel[0, 1] = 1.0 / 25, -1.0 / 25  # smoothed red − green: textured, image-dependent maps
    constants = {
        "w": kernel * 4.0,
        "image_threshold": np.array(image_threshold, dtype=np.float32),
        "pixel_threshold": np.array(pixel_threshold, dtype=np.float32),
        "mean": np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1),
        "std": np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1),
        "size": np.array([size, size], np.int64),
    }
    nodes, pixels = [], "input"
    if dynamic:  # anomalib's pre-processor: Resize to the trained size, the size computed from the input's shape
        nodes += [
            helper.make_node("Shape", ["input"], ["batch_channels"], start=0, end=2),
            helper.make_node("Concat", ["batch_channels", "size"], ["sizes"], axis=0),
            helper.make_node("Resize", ["input", "", "", "sizes"], ["resized"], mode="linear"),
        ]
        pixels = "resized"
    if normalise:
        nodes += [
            helper.make_node("Sub", [pixels, "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["normalised"]),
        ]
        pixels = "normalised"
    nodes += [
        helper.make_node("Conv", [pixels, "w"], ["raw"], pads=[2, 2, 2, 2]),
        helper.make_node("Sigmoid", ["raw"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["pred_score"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("GreaterOrEqual", ["pred_score", "image_threshold"], ["pred_label"]),
        helper.make_node("GreaterOrEqual", ["anomaly_map", "pixel_threshold"], ["pred_mask"]),
    ]
    side = ["height", "width"] if dynamic else [size, size]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *side])]
    outputs = [
        helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("pred_label", TensorProto.BOOL, [1]),
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, size, size]),
        helper.make_tensor_value_info("pred_mask", TensorProto.BOOL, [1, 1, size, size]),
    ]
    return _model(nodes, inputs, outputs, [numpy_helper.from_array(v, n) for n, v in constants.items()])


def minimal_manifest(name: str = "com.example.Good", files: dict[str, str] | None = None) -> dict:
    """The smallest bundle manifest the contract accepts, as JSON (its files need not exist: for the checks that
    come before any file is read)."""
    from edge_agent.bundle.manifest import Golden, Manifest
    from edge_agent.bundle.model_spec import ModelSpec

    return Manifest(
        component_name=name,
        component_version="1.0.0",
        model={"arn": "arn:x"},
        spec=ModelSpec("anomalib", "input", [8, 8], {"pred_score": "pred_score"}),
        outputs=["pred_score"],
        target={"arch": "x86_64"},
        golden=Golden("golden/input.npy", {"pred_score": "golden/output_0.npy"}, 1e-3, 1e-3, 0.01),
        engines=[{"kind": "tvm-cpu", "library": "model.so"}],
        files=files or {},
    ).to_json()
