"""The bundled reference model: a ResNet-18-sized backbone with a PaDiM-style head, built from code.

No downloads and no PyTorch: the backbone has fixed seeded He-initialised weights, the head is fitted
on normal texture crops (ONNX Runtime computes the features), and the result is an ONNX file with the
anomalib output convention (`pred_score`, `anomaly_map`, `pred_mask`). Same seeds, same model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.models.sample_images import (
    DEFECT_KINDS,
    FIT_ROWS,
    IMAGE_SIZE,
    add_defect,
    normal_crops,
    texture_rgb,
)
from edge_agent.bundle.model_spec import IMAGENET_MEAN, IMAGENET_STD

OPSET = 17
IR_VERSION = 8  # ONNX Runtime 1.31 refuses IR version 14; 8 is read by every runtime we use.
FEATURE_SIZE = 28  # PaDiM features live on the layer2 grid (224 / 8)
# Channels drawn (seeded) from each stage's output: PaDiM's random dimension reduction.
CHANNELS_PER_STAGE = {"layer1": 16, "layer2": 24, "layer3": 16, "layer4": 8}
STAGES = (("layer1", 64, 1), ("layer2", 128, 2), ("layer3", 256, 2), ("layer4", 512, 2))
SMOOTHING_SIGMA = 4.0
COVARIANCE_SHRINK = 0.01


@dataclass(frozen=True)
class ReferenceModel:
    """Paths of a built reference model and its metadata file."""

    model_path: Path
    metadata_path: Path


class _Graph:
    """Accumulates ONNX nodes and initialisers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: object) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _conv(
    g: _Graph, x: str, cin: int, cout: int, k: int, stride: int, rng: np.random.Generator, gain: float = 1.0
) -> str:
    fan_in = cin * k * k
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32(gain * np.sqrt(2.0 / fan_in))
    b = np.zeros(cout, dtype=np.float32)
    pad = k // 2
    return g.op(
        "Conv",
        [x, g.const("w", w), g.const("b", b)],
        "conv",
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad, pad, pad, pad],
    )


def _basic_block(g: _Graph, x: str, cin: int, cout: int, stride: int, rng: np.random.Generator) -> str:
    y = g.op("Relu", [_conv(g, x, cin, cout, 3, stride, rng)])
    # Residual branch scaled down (Fixup-style) so activations stay O(1) without batch norm.
    y = _conv(g, y, cout, cout, 3, 1, rng, gain=0.5)
    shortcut = x if stride == 1 and cin == cout else _conv(g, x, cin, cout, 1, stride, rng)
    return g.op("Relu", [g.op("Add", [y, shortcut])])


def _backbone(g: _Graph, image: str, rng: np.random.Generator) -> dict[str, str]:
    """ResNet-18 topology (about 1.8 GFLOPs at 224x224); returns each stage's output name."""
    x = g.op("Relu", [_conv(g, image, 3, 64, 7, 2, rng)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    outputs, cin = {}, 64
    for stage, cout, stride in STAGES:
        x = _basic_block(g, x, cin, cout, stride, rng)
        x = _basic_block(g, x, cout, cout, 1, rng)
        outputs[stage], cin = x, cout
    return outputs


def _embedding(g: _Graph, stages: dict[str, str], rng: np.random.Generator) -> str:
    """Seeded channel selection from every stage, brought to the 28x28 grid and concatenated."""
    parts = []
    for stage, channels, _stride in STAGES:
        idx = np.sort(rng.choice(channels, CHANNELS_PER_STAGE[stage], replace=False)).astype(np.int64)
        x = g.op("Gather", [stages[stage], g.const("idx", idx)], axis=1)
        if stage == "layer1":
            x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
        elif stage != "layer2":
            x = g.op(
                "Resize",
                [x, "", "", g.const("sizes", np.array([1, len(idx), FEATURE_SIZE, FEATURE_SIZE], dtype=np.int64))],
                mode="linear",
            )
        parts.append(x)
    return g.op("Concat", parts, "embedding", axis=1)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(4 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).astype(np.float32)


def _image_tensor(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB → float32 NCHW normalised with the ImageNet statistics."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _make_model(g: _Graph, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        g.nodes,
        "lookout_reference_padim",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, IMAGE_SIZE, IMAGE_SIZE])],
        outputs,
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lookout-edge reference model"
    )
    model.ir_version = IR_VERSION
    return model


def _run(model: onnx.ModelProto, images: list[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": _image_tensor(img)})[0][0] for img in images]


def _fit_gaussians(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position mean and inverse covariance (shrunk towards the pooled covariance), PaDiM-style."""
    n, d, h, w = features.shape
    flat = features.reshape(n, d, h * w).transpose(2, 0, 1).astype(np.float64)  # (P, N, D)
    mean = flat.mean(axis=1)  # (P, D)
    centred = flat - mean[:, None, :]
    local = np.einsum("pnd,pne->pde", centred, centred) / max(n - 1, 1)
    pooled = local.mean(axis=0)
    weight = n / (n + d)  # few samples per position: lean on the pooled estimate
    cov = weight * local + (1 - weight) * pooled + COVARIANCE_SHRINK * np.eye(d)
    return mean.astype(np.float32), np.linalg.inv(cov).astype(np.float32)


def _head(g: _Graph, embedding: str, mean: np.ndarray, inv_cov: np.ndarray) -> str:
    """Mahalanobis distance of every position's embedding → raw anomaly map (1, 1, 224, 224), smoothed."""
    positions, dims = mean.shape
    x = g.op("Reshape", [embedding, g.const("shape", np.array([1, dims, positions], dtype=np.int64))])
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # (1, P, D)
    delta = g.op("Sub", [x, g.const("mean", mean[None])])
    delta4 = g.op("Unsqueeze", [delta, g.const("axes", np.array([2], dtype=np.int64))])  # (1, P, 1, D)
    projected = g.op("MatMul", [delta4, g.const("inv_cov", inv_cov)])  # (1, P, 1, D)
    dist2 = g.op(
        "ReduceSum", [g.op("Mul", [projected, delta4]), g.const("axes", np.array([2, 3], dtype=np.int64))], keepdims=0
    )
    dist = g.op("Sqrt", [g.op("Relu", [dist2])])
    grid = g.op("Reshape", [dist, g.const("shape", np.array([1, 1, FEATURE_SIZE, FEATURE_SIZE], dtype=np.int64))])
    up = g.op(
        "Resize",
        [grid, "", "", g.const("sizes", np.array([1, 1, IMAGE_SIZE, IMAGE_SIZE], dtype=np.int64))],
        mode="linear",
    )
    kernel = _gaussian_kernel(SMOOTHING_SIGMA)
    r = len(kernel) // 2
    rows = g.op("Conv", [up, g.const("gauss_v", kernel.reshape(1, 1, -1, 1))], pads=[r, 0, r, 0])
    return g.op("Conv", [rows, g.const("gauss_h", kernel.reshape(1, 1, 1, -1))], "raw_map", pads=[0, r, 0, r])


def _best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold with the best F1 (anomalib's adaptive threshold)."""
    best, best_f1 = float(scores.max()), -1.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = float(np.sum(pred & labels))
        f1 = 2 * tp / (pred.sum() + labels.sum()) if tp else 0.0
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def _normalise(g: _Graph, raw: str, threshold: float, low: float, high: float) -> str:
    """anomalib's min-max normalisation: threshold → 0.5, clipped to 0..1."""
    scale = np.float32(1.0 / max(high - low, 1e-6))
    shifted = g.op("Sub", [raw, g.const("threshold", np.array(threshold, dtype=np.float32))])
    y = g.op(
        "Add",
        [g.op("Mul", [shifted, g.const("scale", np.array(scale))]), g.const("half", np.array(0.5, dtype=np.float32))],
    )
    return g.op(
        "Clip", [y, g.const("zero", np.array(0.0, dtype=np.float32)), g.const("one", np.array(1.0, dtype=np.float32))]
    )


def build_reference_model(
    output_dir: Path, seed: int = 0, fit_images: int = 48, texture: str = "brick"
) -> ReferenceModel:
    """Build, fit and write `model.onnx` and `metadata.json` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)  # first: a path in the way fails before minutes of work
    rng = np.random.default_rng(seed)
    g = _Graph()
    embedding = _embedding(g, _backbone(g, "input", rng), rng)
    dims = sum(CHANNELS_PER_STAGE.values())
    feature_model = _make_model(
        g, [helper.make_tensor_value_info(embedding, TensorProto.FLOAT, [1, dims, FEATURE_SIZE, FEATURE_SIZE])]
    )

    source = texture_rgb(texture)
    fit = normal_crops(source, FIT_ROWS, fit_images, seed + 1)
    mean, inv_cov = _fit_gaussians(np.stack(_run(feature_model, fit)))
    raw_map = _head(g, embedding, mean, inv_cov)

    # Calibrate the threshold and normalisation on fit-region images, half with synthetic defects.
    calib_rng = np.random.default_rng(seed + 2)
    calib_normals = normal_crops(source, FIT_ROWS, 16, seed + 3)
    calib_defects = [
        add_defect(img, DEFECT_KINDS[i % 3], calib_rng)[0]
        for i, img in enumerate(normal_crops(source, FIT_ROWS, 16, seed + 4))
    ]
    raw_model = _make_model(g, [helper.make_tensor_value_info(raw_map, TensorProto.FLOAT, None)])
    maps = np.stack(_run(raw_model, calib_normals + calib_defects))
    scores = maps.reshape(len(maps), -1).max(axis=1)
    labels = np.array([False] * len(calib_normals) + [True] * len(calib_defects))
    threshold = _best_f1_threshold(scores, labels)
    low, high = float(maps.min()), float(maps.max())

    anomaly_map = _normalise(g, raw_map, threshold, low, high)
    g.nodes.append(helper.make_node("Identity", [anomaly_map], ["anomaly_map"]))
    raw_score = g.op("ReduceMax", [raw_map], keepdims=0)
    score = _normalise(
        g, g.op("Reshape", [raw_score, g.const("shape", np.array([1], dtype=np.int64))]), threshold, low, high
    )
    g.nodes.append(helper.make_node("Identity", [score], ["pred_score"]))
    g.nodes.append(
        helper.make_node("GreaterOrEqual", ["anomaly_map", g.const("half", np.array(0.5, np.float32))], ["pred_mask"])
    )
    model = _make_model(
        g,
        [
            helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, IMAGE_SIZE, IMAGE_SIZE]),
            helper.make_tensor_value_info("pred_mask", TensorProto.BOOL, [1, 1, IMAGE_SIZE, IMAGE_SIZE]),
        ],
    )
    onnx.checker.check_model(model, full_check=True)

    model_path, metadata_path = output_dir / "model.onnx", output_dir / "metadata.json"
    onnx.save(model, model_path)
    metadata = {
        "input_size": [IMAGE_SIZE, IMAGE_SIZE],
        "interpolation": "linear",
        "scale": 1 / 255,
        "normalize": True,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "threshold": 0.5,
        "labels": [{"name": "background", "color": "#FFFFFF"}, {"name": "anomaly", "color": "#FF0000"}],
    }
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return ReferenceModel(model_path, metadata_path)
