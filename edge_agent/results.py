"""Maps raw model outputs to a Lookout for Vision result (specs/model-contract.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detection:
    """The image-level result of one inference."""

    anomaly_score: float
    anomaly_threshold: float
    is_anomalous: bool
    confidence: float


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def image_score(spec: dict[str, Any], outputs: dict[str, np.ndarray]) -> float:
    """The model's image-level anomaly score in 0..1, per its output convention."""
    roles = spec["outputs"]
    kind = spec["model_type"]
    if kind == "anomalib":
        return float(np.clip(outputs[roles["pred_score"]].reshape(-1)[0], 0.0, 1.0))
    if kind == "classification":
        row = outputs[roles["class_scores"]].reshape(1, -1).astype(np.float64)
        probs = row if spec["classification_output"] == "probabilities" else _softmax(row, axis=1)
        return float(probs[0, spec["anomalous_class_index"]])
    if "image_score" in roles:
        return float(np.clip(outputs[roles["image_score"]].reshape(-1)[0], 0.0, 1.0))
    probs = _softmax(outputs[roles["class_map"]][0].astype(np.float64), axis=0)
    return float((1.0 - probs[0]).max())


def detect(spec: dict[str, Any], outputs: dict[str, np.ndarray], threshold: float | None = None) -> Detection:
    """Score, threshold (the model's unless overridden), decision and confidence.

    Confidence is the score when the image is called anomalous and 1 − score when it is called normal:
    how far the model leans towards the answer it gave.
    """
    score = image_score(spec, outputs)
    limit = spec["threshold"] if threshold is None else threshold
    anomalous = score >= limit
    return Detection(
        anomaly_score=score,
        anomaly_threshold=float(limit),
        is_anomalous=anomalous,
        confidence=score if anomalous else 1.0 - score,
    )
