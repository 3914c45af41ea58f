"""Realistic sample images built offline: skimage textures and synthetic surface defects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

IMAGE_SIZE = 224
# Rows of the 512x512 texture used for fitting; held-out images come from the rows below,
# so no held-out pixel was ever seen while fitting.
FIT_ROWS = (0, 288)
HELD_OUT_ROWS = (288, 512)
DEFECT_KINDS = ("scratch", "blob", "missing_patch")


@dataclass(frozen=True)
class SampleImage:
    """An RGB uint8 image (H, W, 3) with its ground truth."""

    name: str
    rgb: np.ndarray
    is_anomalous: bool
    defect_mask: np.ndarray  # bool (H, W)


def texture_rgb(name: str = "brick") -> np.ndarray:
    """A skimage texture as an RGB uint8 image with a mild warm tint (the textures are grey)."""
    grey = getattr(skdata, name)().astype(np.float32)
    tint = np.array([1.0, 0.93, 0.85], dtype=np.float32)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def normal_crops(texture: np.ndarray, rows: tuple[int, int], count: int, seed: int) -> list[np.ndarray]:
    """Random 224x224 crops from a band of rows, with flips, as contiguous RGB arrays."""
    rng = np.random.default_rng(seed)
    top, bottom = rows
    crops = []
    for _ in range(count):
        y = int(rng.integers(top, bottom - IMAGE_SIZE + 1))
        x = int(rng.integers(0, texture.shape[1] - IMAGE_SIZE + 1))
        crop = texture[y : y + IMAGE_SIZE, x : x + IMAGE_SIZE]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops.append(np.ascontiguousarray(crop))
    return crops


def add_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one synthetic defect; returns the new image and the defect's pixel mask."""
    out = image.copy()
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    h, w = mask.shape
    cx, cy = int(rng.integers(40, w - 40)), int(rng.integers(40, h - 40))
    if kind == "scratch":
        length, angle = rng.uniform(50, 120), rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        p1, p2 = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
        thickness = int(rng.integers(2, 5))
        shade = int(rng.choice([20, 235]))
        cv2.line(out, p1, p2, (shade, shade, shade), thickness, cv2.LINE_AA)
        cv2.line(mask, p1, p2, 1, thickness)
    elif kind == "blob":
        axes = (int(rng.integers(8, 20)), int(rng.integers(8, 20)))
        colour = tuple(int(c) for c in rng.choice([[40, 30, 25], [200, 60, 40], [90, 110, 40]]))
        cv2.ellipse(out, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        cv2.ellipse(mask, (cx, cy), axes, 0.0, 0, 360, 1, -1)
        out = np.where(mask[..., None] > 0, cv2.GaussianBlur(out, (5, 5), 0), out)
    elif kind == "missing_patch":
        pw, ph = int(rng.integers(20, 40)), int(rng.integers(20, 40))
        x0, y0 = cx - pw // 2, cy - ph // 2
        # A chipped-out recess: dark, with a little grain.
        depth = rng.integers(25, 70) + rng.normal(0, 6, (ph, pw, 1))
        out[y0 : y0 + ph, x0 : x0 + pw] = np.clip(depth, 0, 255).astype(np.uint8)
        mask[y0 : y0 + ph, x0 : x0 + pw] = 1
    else:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")
    return np.ascontiguousarray(out), mask.astype(bool)


def held_out_set(count_per_class: int, seed: int, texture_name: str = "brick") -> list[SampleImage]:
    """Held-out normal images and the same number of images with one synthetic defect each."""
    texture = texture_rgb(texture_name)
    rng = np.random.default_rng(seed)
    empty = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    normals = normal_crops(texture, HELD_OUT_ROWS, 2 * count_per_class, seed)
    samples = [SampleImage(f"normal_{i:02d}", img, False, empty) for i, img in enumerate(normals[:count_per_class])]
    for i, base in enumerate(normals[count_per_class:]):
        kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
        img, mask = add_defect(base, kind, rng)
        samples.append(SampleImage(f"{kind}_{i:02d}", img, True, mask))
    return samples


def write_samples(samples: list[SampleImage], out_dir: Path) -> list[Path]:
    """Save samples as PNG files named after them (normal_*, scratch_*, blob_*, missing_patch_*)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for sample in samples:
        path = out_dir / f"{sample.name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def read_rgb(path: Path) -> np.ndarray:
    """An image file as packed RGB888 (H, W, 3) uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path} is not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
