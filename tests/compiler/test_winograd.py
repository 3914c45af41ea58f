"""Winograd F(4×4, 3×3): which convolutions it takes, and that TVM's build of them matches ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.build.winograd import MIN_OUTPUT_SIDE, use_winograd
from tests.models import conv_model, import_relax


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
    model = conv_model(side, weight, pads=[1, 1, 1, 1])
    mod = use_winograd(import_relax(model))
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
    mod = use_winograd(import_relax(conv_model(side, weight, **conv_attrs)))
    assert _conv_calls(mod) == 1 and not any("winograd" in name for name in _functions(mod))
