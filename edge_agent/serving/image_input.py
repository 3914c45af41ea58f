"""The image of a DetectAnomalies call: size limits and the packed RGB888 buffer from bytes."""

from __future__ import annotations

import numpy as np

from edge_agent.errors import InvalidArgument

MIN_SIDE = 64
MAX_SIDE = 4096


def check_dimensions(width: int, height: int) -> None:
    """Both sides within 64..4096 pixels, the limits of the Edge Agent API."""
    for field, value in (("bitmap.width", width), ("bitmap.height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise InvalidArgument(f"{field} is {value}; images must be {MIN_SIDE} to {MAX_SIDE} pixels on each side")


def image_from_bytes(width: int, height: int, data: bytes) -> np.ndarray:
    """An (H, W, 3) uint8 view of `data`, which must be exactly width*height*3 bytes."""
    needed = width * height * 3
    if len(data) != needed:
        raise InvalidArgument(
            f"bitmap.byte_data has {len(data)} bytes but width*height*3 = {width}*{height}*3 = {needed}: send one "
            "packed RGB888 image (R, G, B per pixel, no padding)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
