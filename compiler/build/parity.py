"""Golden inputs, and the ONNX Runtime reference outputs a compiled module is checked against."""

from __future__ import annotations

import cv2
import numpy as np
import onnx

from edge_agent.bundle.model_spec import ModelSpec
from edge_agent.models.preprocess import Preprocessor


def golden_input(spec: ModelSpec, seed: int = 7) -> np.ndarray:
    """A deterministic input: a smooth random RGB image put through the model's own preprocessing."""
    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    coarse = rng.integers(0, 256, size=(max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return Preprocessor.from_spec(spec)(image)


def run_onnx_runtime(model: onnx.ModelProto, spec: ModelSpec, tensor: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {spec.input_name: tensor}), strict=True))
