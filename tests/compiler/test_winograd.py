"""Winograd F(4×4, 3×3): which convolutions it takes, and that TVM's build of them matches ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.build.winograd import MIN_OUTPUT_SIDE, use_winograd


def _conv_model(side: int, weight: np.ndarray, **conv_attrs: object) -> onnx.ModelProto:
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


def _import(model: onnx.ModelProto):
    """The model as a Relax module with its weights as constants, as the packaging pipeline imports it."""
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(model, keep_params_in_input=False)


def _functions(mod) -> list[str]:
    return sorted(gv.name_hint for gv in mod.get_global_vars())


def _conv_calls(mod) -> int:
    return mod.script().count("R.nn.conv2d(")


def test_a_3x3_convolution_by_winograd_matches_onnx_runtime() -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    side = MIN_OUTPUT_SIDE + 2
    rng = np.random.default_rng(7)
    weight = rng.normal(0, 0.1, (12, 8, 3, 3)).astype(np.float32)
    model = _conv_model(side, weight, pads=[1, 1, 1, 1])
    mod = use_winograd(_import(model))
    assert _conv_calls(mod) == 0 and "winograd_products" in _functions(mod)

    image = rng.normal(0, 1, (1, 8, side, side + 1)).astype(np.float32)
    vm = relax.VirtualMachine(tvm.compile(relax.get_pipeline("zero")(mod), "llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(image)).numpy()
    (expected,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": image}
    )
    assert got.shape == expected.shape == (1, 12, side, side + 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * float(np.abs(expected).max()))


@pytest.mark.parametrize(
    ("side", "kernel", "conv_attrs"),
    [
        (MIN_OUTPUT_SIDE - 4, 3, {"pads": [1, 1, 1, 1]}),  # too small: few tiles per transformed weight
        (MIN_OUTPUT_SIDE + 2, 3, {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
        (MIN_OUTPUT_SIDE + 2, 3, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}),
        (MIN_OUTPUT_SIDE + 2, 3, {"pads": [0, 0, 0, 0]}),
        (MIN_OUTPUT_SIDE + 2, 3, {"pads": [1, 1, 1, 1], "group": 2}),
        (MIN_OUTPUT_SIDE + 2, 1, {}),
    ],
    ids=["small", "stride-2", "dilated", "unpadded", "grouped", "1x1"],
)
def test_other_convolutions_stay_direct(side: int, kernel: int, conv_attrs: dict) -> None:
    groups = int(conv_attrs.get("group", 1))
    weight = np.ones((8, 8 // groups, kernel, kernel), dtype=np.float32)
    mod = use_winograd(_import(_conv_model(side, weight, **conv_attrs)))
    assert _conv_calls(mod) == 1 and not any("winograd" in name for name in _functions(mod))
