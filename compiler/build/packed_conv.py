"""Direct convolutions for CPU targets with output channels blocked by the SIMD width (the NCHWc scheme of oneDNN
and ONNX Runtime's MLAS, inside one kernel).

A convolution with constant weights that Winograd does not take becomes one TE function of three stages: the
padded input, the blocked product `[N, CO/v, OH, OW, v]` accumulated over input channels and the kernel window,
and its unpacking to NCHW that the following bias, activation and residual add fuse into. The weights are
packed once at packaging time to `[CO/v, CI, KH, KW, v]` (zero-padded to whole blocks), so the innermost loop
multiplies one input value, broadcast, by `v` contiguous weights into `v` contiguous accumulators: a full
vector FMA whatever the image size. Input and output stay NCHW, so nothing else in the graph changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.build.relax_rewrites import constant_float_weights, rewrite_calls

# The TE stages of the blocked product and of its unpacking to NCHW (compiler/build/search_free.py looks for them).
PACKED_CONV_BLOCK, PACKED_CONV_OUTPUT_BLOCK = "packed_conv", "packed_conv_output"


def pack_weights(weight: np.ndarray, lanes: int) -> np.ndarray:
    """[CO, CI, KH, KW] → [ceil(CO / lanes), CI, KH, KW, lanes], output channels past CO zero."""
    channels_out = weight.shape[0]
    blocks = -(-channels_out // lanes)
    padded = np.zeros((blocks * lanes, *weight.shape[1:]), dtype=np.float32)
    padded[:channels_out] = weight
    return np.ascontiguousarray(padded.reshape(blocks, lanes, *weight.shape[1:]).transpose(0, 2, 3, 4, 1))


def packed_convolution(
    data: Any, weights: Any, strides: list[int], padding: list[int], dilation: list[int], channels_out: int
) -> Any:
    """data [N, CI, H, W] ⊛ packed weights [CO/v, CI, KH, KW, v] → [N, CO, OH, OW] (padding: top, left,
    bottom, right)."""
    import tvm
    from tvm import te

    batch, channels_in, height, width = (int(d) for d in data.shape)
    blocks, _, kernel_h, kernel_w, lanes = (int(d) for d in weights.shape)
    top, left, bottom, right = padding
    (stride_h, stride_w), (dilation_h, dilation_w) = strides, dilation
    out_h = (height + top + bottom - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width + left + right - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    source = data
    if any(padding):
        zero = tvm.tirx.const(0.0, data.dtype)
        source = te.compute(
            (batch, channels_in, height + top + bottom, width + left + right),
            lambda n, c, y, x: tvm.tirx.if_then_else(
                tvm.tirx.all(y >= top, y < height + top, x >= left, x < width + left),
                data[n, c, y - top, x - left],
                zero,
            ),
            name="packed_conv_padded",
        )
    c = te.reduce_axis((0, channels_in), "c")
    ky = te.reduce_axis((0, kernel_h), "ky")
    kx = te.reduce_axis((0, kernel_w), "kx")
    blocked = te.compute(
        (batch, blocks, out_h, out_w, lanes),
        lambda n, block, y, x, lane: te.sum(
            source[n, c, y * stride_h + ky * dilation_h, x * stride_w + kx * dilation_w]
            * weights[block, c, ky, kx, lane],
            axis=[c, ky, kx],
        ),
        name=PACKED_CONV_BLOCK,
    )
    return te.compute(
        (batch, channels_out, out_h, out_w),
        lambda n, o, y, x: blocked[n, o // lanes, y, x, o % lanes],
        name=PACKED_CONV_OUTPUT_BLOCK,
    )


def eligible(call: Any) -> bool:
    """Whether `call` is a convolution this rewrite handles: constant float32 weights, one group."""
    return constant_float_weights(call) and int(call.attrs.groups) == 1


def use_packed_convolutions(mod: Any, lanes: int) -> Any:
    """`mod` with every eligible convolution computed with output channels blocked by `lanes`."""
    from tvm import relax

    def rewrite(bb: Any, call: Any) -> Any:
        if not eligible(call):
            return None
        weight = call.args[1].value.numpy()
        attrs = call.attrs
        return bb.call_te(
            packed_convolution,
            call.args[0],
            relax.const(pack_weights(weight, lanes)),
            [int(s) for s in attrs.strides],
            [int(p) for p in attrs.padding],
            [int(d) for d in attrs.dilation],
            int(weight.shape[0]),
            primfunc_name_hint="packed_conv",
        )

    return rewrite_calls(mod, "relax.nn.conv2d", rewrite)
