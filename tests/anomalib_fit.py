"""Fits anomalib 2.x models on generated texture tiles and exports them with anomalib's own exporter, as a user
would (tests/integration/test_anomalib_exports.py runs it in a child process, so torch stays out of pytest's):

    python -m tests.anomalib_fit OUT

writes OUT/images/{good,test}/*.png (256×256 RGB tiles; the test tiles half with a synthetic defect) and
OUT/<model>/weights/onnx/model.onnx (+ model.onnx.data) for padim, patchcore, fastflow and stfpm, and
OUT/patchcore-batch1/… re-exported with the command create-model names for PatchCore's batch-2 export. Backbones
are built with random weights (pre_trained=False; STFPM's teacher, which anomalib always builds pre-trained, too):
nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from compiler.models.sample_images import FIT_ROWS, held_out_set, normal_crops, texture_rgb

TILE = 256  # anomalib's default image size: the graph's own resize is then the identity
TRAIN_TILES = 16
TEST_TILES_PER_CLASS = 4
# The command create-model's refusal names for PatchCore's default export (batch pinned to 2).
BATCH1_EXPORT = {"input_size": (TILE, TILE), "onnx_kwargs": {"dynamic_axes": {}}}


def write_tiles(out: Path) -> None:
    def save(folder: Path, name: str, rgb: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tile = cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))

    for i, rgb in enumerate(normal_crops(texture_rgb("brick"), FIT_ROWS, TRAIN_TILES, seed=0)):
        save(out / "good", f"train_{i:02d}", rgb)
    for sample in held_out_set(TEST_TILES_PER_CLASS, seed=1):
        save(out / ("bad" if sample.is_anomalous else "test"), sample.name, sample.rgb)


def _models() -> dict:
    from anomalib import models
    from anomalib.models.image.stfpm import torch_model as stfpm

    extractor = stfpm.TimmFeatureExtractor
    stfpm.TimmFeatureExtractor = lambda *a, **k: extractor(*a, **{**k, "pre_trained": False})
    quiet = {"evaluator": False, "visualizer": False}  # the tiles have no ground-truth masks to evaluate with
    small = {"backbone": "resnet18", **quiet}  # model → (the model, epochs)
    return {
        "padim": (models.Padim(pre_trained=False, **small), 1),
        "patchcore": (
            models.Patchcore(layers=("layer2", "layer3"), pre_trained=False, coreset_sampling_ratio=0.02, **small),
            1,
        ),
        "fastflow": (models.Fastflow(pre_trained=False, flow_steps=4, **small), 2),
        "stfpm": (models.Stfpm(**small), 2),
    }


def main(out: Path) -> None:
    import torch
    from anomalib.data import Folder
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    images = out / "images"
    write_tiles(images)
    seed_everything(0)
    torch.set_num_threads(2)
    data = Folder(
        name="tiles", root=images, normal_dir="good", abnormal_dir="bad", normal_test_dir="test",
        train_batch_size=8, eval_batch_size=8, num_workers=0, seed=0,
    )  # fmt: skip
    for name, (model, epochs) in _models().items():
        engine = Engine(
            max_epochs=epochs, accelerator="cpu", devices=1, logger=False, default_root_dir=out / "runs" / name
        )
        engine.fit(model, datamodule=data)
        engine.export(model, "onnx", export_root=out / name)
        if name == "patchcore":
            engine.export(model, "onnx", export_root=out / "patchcore-batch1", **BATCH1_EXPORT)
        print(f"exported {name}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
