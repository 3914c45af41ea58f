"""Winograd F(4×4, 3×3) convolutions for CPU targets.

A 3×3, stride-1 convolution with constant weights becomes three TE computes, each a task MetaSchedule tunes:
the input transform (overlapping 6×6 tiles, Bᵀ d B), 36 independent matrix products against the weights
transformed once at packaging time (G g Gᵀ, stored as the product's right-hand side), and the output
transform (Aᵀ m A) that the following bias, ReLU and residual add fuse into. The products do a quarter of
the direct convolution's multiplications (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.build.relax_rewrites import constant_float_weights, rewrite_calls

TILE = 4  # output pixels per tile side: F(4×4, 3×3)
ALPHA = TILE + 2  # input tile side

# Transform matrices of F(4, 3), interpolation points 0, ±1, ±2, ∞.
INPUT_TRANSFORM = np.array(  # Bᵀ
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
KERNEL_TRANSFORM = np.array(  # G
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
OUTPUT_TRANSFORM = np.array(  # Aᵀ
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=np.float64,
)

# Convolutions whose output is smaller than this per side stay direct: with few tiles per transformed weight,
# its 4× larger copy costs about what the saved multiplications gain (ResNet-18's 7×7×512 layer, 2 Zen 4
# cores: 1.29 ms by Winograd against 1.39 ms direct, for 38 MB of weights instead of 9).
MIN_OUTPUT_SIDE = 14


def transform_weights(weight: np.ndarray) -> np.ndarray:
    """[CO, CI, 3, 3] weights → [ALPHA, ALPHA, CI, CO], the right-hand sides of the 36 matrix products."""
    g = KERNEL_TRANSFORM
    return np.einsum("ea,oiab,nb->enio", g, weight.astype(np.float64), g).astype(np.float32)


def _tiles_per_side(size: int) -> int:
    return (size + TILE - 1) // TILE


def input_transform(data: Any, b_t: Any) -> Any:
    """data [1, CI, H, W] (padding 1 added here) → [ALPHA, ALPHA, tiles, CI]."""
    import tvm
    from tvm import te

    _, channels, height, width = (int(d) for d in data.shape)
    tiles_h, tiles_w = _tiles_per_side(height), _tiles_per_side(width)
    zero = tvm.tirx.const(0.0, data.dtype)
    padded = te.compute(
        (channels, tiles_h * TILE + 2, tiles_w * TILE + 2),
        lambda c, i, j: tvm.tirx.if_then_else(
            tvm.tirx.all(i >= 1, i <= height, j >= 1, j <= width), data[0, c, i - 1, j - 1], zero
        ),
        name="winograd_padded",
    )
    a = te.reduce_axis((0, ALPHA), "a")
    rows = te.compute(
        (ALPHA, ALPHA, tiles_h * tiles_w, channels),
        lambda eps, col, tile, c: te.sum(
            b_t[eps, a] * padded[c, (tile // tiles_w) * TILE + a, (tile % tiles_w) * TILE + col], axis=a
        ),
        name="winograd_input_rows",
    )
    b = te.reduce_axis((0, ALPHA), "b")
    return te.compute(
        (ALPHA, ALPHA, tiles_h * tiles_w, channels),
        lambda eps, nu, tile, c: te.sum(b_t[nu, b] * rows[eps, b, tile, c], axis=b),
        name="winograd_input",
    )


def tile_products(transformed: Any, weights: Any) -> Any:
    """[ALPHA, ALPHA, tiles, CI] × [ALPHA, ALPHA, CI, CO] → [ALPHA, ALPHA, tiles, CO]."""
    from tvm import te

    channels_in = int(transformed.shape[3])
    c = te.reduce_axis((0, channels_in), "c")
    return te.compute(
        (ALPHA, ALPHA, int(transformed.shape[2]), int(weights.shape[3])),
        lambda eps, nu, tile, o: te.sum(transformed[eps, nu, tile, c] * weights[eps, nu, c, o], axis=c),
        name="winograd_products",
    )


def output_transform(products: Any, a_t: Any, height: int, width: int) -> Any:
    """[ALPHA, ALPHA, tiles, CO] → the convolution's output [1, CO, height, width]."""
    from tvm import te

    tiles_w = _tiles_per_side(width)
    channels_out = int(products.shape[3])
    e = te.reduce_axis((0, ALPHA), "e")
    rows = te.compute(
        (TILE, ALPHA, int(products.shape[2]), channels_out),
        lambda y, nu, tile, o: te.sum(a_t[y, e] * products[e, nu, tile, o], axis=e),
        name="winograd_output_rows",
    )
    f = te.reduce_axis((0, ALPHA), "f")
    return te.compute(
        (1, channels_out, height, width),
        lambda n, o, h, w: te.sum(a_t[w % TILE, f] * rows[h % TILE, f, (h // TILE) * tiles_w + w // TILE, o], axis=f),
        name="winograd_output",
    )


def eligible(call: Any) -> bool:
    """Whether `call` is a convolution this rewrite handles (the one rule for it)."""
    attrs = call.attrs
    shape = [int(s) for s in call.args[0].ty.shape]
    return (
        constant_float_weights(call)
        and [int(s) for s in call.args[1].ty.shape][2:] == [3, 3]
        and int(attrs.groups) == 1
        and [int(s) for s in attrs.strides] == [1, 1]
        and [int(d) for d in attrs.dilation] == [1, 1]
        and [int(p) for p in attrs.padding] == [1, 1, 1, 1]
        and shape[0] == 1
        and min(shape[2:]) >= MIN_OUTPUT_SIDE
    )


def use_winograd(mod: Any) -> Any:
    """`mod` with every eligible 3×3 convolution computed by Winograd F(4×4, 3×3)."""
    from tvm import relax

    b_t = relax.const(INPUT_TRANSFORM.astype(np.float32))
    a_t = relax.const(OUTPUT_TRANSFORM.astype(np.float32))

    def rewrite(bb: Any, call: Any) -> Any:
        if not eligible(call):
            return None
        data = call.args[0]
        _, _, height, width = (int(s) for s in data.ty.shape)
        weights = relax.const(transform_weights(call.args[1].value.numpy()))
        transformed = bb.emit_te(input_transform, data, b_t, primfunc_name_hint="winograd_input")
        products = bb.emit_te(tile_products, transformed, weights, primfunc_name_hint="winograd_products")
        return bb.call_te(output_transform, products, a_t, height, width, primfunc_name_hint="winograd_output")

    return rewrite_calls(mod, "relax.nn.conv2d", rewrite)
