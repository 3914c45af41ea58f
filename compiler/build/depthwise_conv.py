"""Depthwise convolutions for CPU targets computed on rows widened to whole vectors, one channel plane at a time.

TVM's grouped convolution vectorises along an output row; MobileNet's and EfficientNet's rows are 7–112 wide,
rarely a whole number of SIMD vectors, and its padded input is a separate pass over memory. Here a convolution
whose every output channel reads one input channel becomes one TE function of three stages: the padded input
plane, widened on the right with zeros so that the product's rows are a whole number of vectors; the product
`[N, C, OH, OW']` (OW' = OW rounded up to the vector width); and its cropping to `[N, C, OH, OW]`, which the
following bias and activation fuse into. compiler/build/search_free.py pads one channel plane at a time, inside
the product's channel loop, so each plane is convolved while still in cache.
"""

from __future__ import annotations

from typing import Any

from compiler.build.relax_rewrites import constant_float_weights, rewrite_calls

# The TE stages: the padded plane and the widened product (compiler/build/search_free.py places both), its cropping.
DEPTHWISE_PADDED_BLOCK = "depthwise_conv_padded"
DEPTHWISE_BLOCK, DEPTHWISE_OUTPUT_BLOCK = "depthwise_conv", "depthwise_conv_output"


def widened(width: int, lanes: int) -> int:
    """`width` rounded up to whole vectors of `lanes` (or of the smallest power of two ≥ 4 holding a narrower
    row, so a 7-wide row costs 8 lanes, not 16)."""
    vector = lanes
    while vector > 4 and vector // 2 >= width:
        vector //= 2
    return -(-width // vector) * vector


def depthwise_convolution(
    data: Any, weights: Any, strides: list[int], padding: list[int], dilation: list[int], lanes: int
) -> Any:
    """data [N, CI, H, W] ⊛ weights [CO, 1, KH, KW] (CO a multiple of CI; output channel o reads input channel
    o // (CO / CI)) → [N, CO, OH, OW] (padding: top, left, bottom, right)."""
    import tvm
    from tvm import te

    batch, channels_in, height, width = (int(d) for d in data.shape)
    channels_out, _, kernel_h, kernel_w = (int(d) for d in weights.shape)
    multiplier = channels_out // channels_in
    top, left, bottom, right = padding
    (stride_h, stride_w), (dilation_h, dilation_w) = strides, dilation
    out_h = (height + top + bottom - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width + left + right - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    wide = widened(out_w, lanes)
    padded_w = (wide - 1) * stride_w + dilation_w * (kernel_w - 1) + 1
    zero = tvm.tirx.const(0.0, data.dtype)
    source = te.compute(
        (batch, channels_in, height + top + bottom, padded_w),
        lambda n, c, y, x: tvm.tirx.if_then_else(
            tvm.tirx.all(y >= top, y < height + top, x >= left, x < width + left),
            data[n, c, y - top, x - left],
            zero,
        ),
        name=DEPTHWISE_PADDED_BLOCK,
    )
    ky = te.reduce_axis((0, kernel_h), "ky")
    kx = te.reduce_axis((0, kernel_w), "kx")
    product = te.compute(
        (batch, channels_out, out_h, wide),
        lambda n, o, y, x: te.sum(
            source[n, o // multiplier, y * stride_h + ky * dilation_h, x * stride_w + kx * dilation_w]
            * weights[o, 0, ky, kx],
            axis=[ky, kx],
        ),
        name=DEPTHWISE_BLOCK,
    )
    return te.compute(
        (batch, channels_out, out_h, out_w), lambda n, o, y, x: product[n, o, y, x], name=DEPTHWISE_OUTPUT_BLOCK
    )


def eligible(call: Any) -> bool:
    """Whether `call` is a convolution this rewrite handles: constant float32 weights, one input channel per
    group (depthwise, any channel multiplier)."""
    if not constant_float_weights(call):
        return False
    import tvm

    groups = int(call.attrs.groups)
    channels_in = call.args[0].ty.shape[1]
    if groups == 1 or call.args[1].value.shape[1] != 1 or not isinstance(channels_in, tvm.tirx.IntImm):
        return False
    return groups == int(channels_in)


def use_depthwise_convolutions(mod: Any, lanes: int) -> Any:
    """`mod` with every eligible depthwise convolution computed on rows widened to vectors of `lanes`."""

    def rewrite(bb: Any, call: Any) -> Any:
        if not eligible(call):
            return None
        attrs = call.attrs
        return bb.call_te(
            depthwise_convolution,
            call.args[0],
            call.args[1],
            [int(s) for s in attrs.strides],
            [int(p) for p in attrs.padding],
            [int(d) for d in attrs.dilation],
            lanes,
            primfunc_name_hint="depthwise_conv",
        )

    return rewrite_calls(mod, "relax.nn.conv2d", rewrite)
