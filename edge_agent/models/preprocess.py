"""Image preprocessing from manifest metadata: OpenCV resize, scale, normalise, HWC→NCHW."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.bundle.model_spec import INTERPOLATION_NAMES, ModelSpec

# The contract's interpolation names → OpenCV's flags (INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, INTER_AREA).
INTERPOLATIONS = {name: getattr(cv2, f"INTER_{name.upper()}") for name in INTERPOLATION_NAMES}


@dataclass(frozen=True)
class Preprocessor:
    """Turns packed RGB888 images into the model's float32 NCHW input."""

    height: int
    width: int
    interpolation: int
    scale: np.ndarray  # per channel: scale / std
    offset: np.ndarray  # per channel: -mean / std

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Preprocessor:
        height, width = spec.input_size
        mean = np.asarray(spec.mean if spec.normalize else [0.0, 0.0, 0.0], dtype=np.float32)
        std = np.asarray(spec.std if spec.normalize else [1.0, 1.0, 1.0], dtype=np.float32)
        return cls(
            height=height,
            width=width,
            interpolation=INTERPOLATIONS[spec.interpolation],
            scale=(np.float32(spec.scale) / std).astype(np.float32),
            offset=(-mean / std).astype(np.float32),
        )

    def new_tensor(self) -> np.ndarray:
        return np.empty((1, 3, self.height, self.width), dtype=np.float32)

    def __call__(self, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB → (1, 3, height, width) float32, written into `out` when given (a worker reuses
        one tensor for every request: one pass per channel, no temporaries the size of the image)."""
        if rgb.shape[:2] != (self.height, self.width):
            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=self.interpolation)
        tensor = self.new_tensor() if out is None else out
        for c, channel in enumerate(cv2.split(rgb)):
            plane = tensor[0, c]
            plane[...] = channel
            plane *= self.scale[c]
            plane += self.offset[c]
        return tensor
