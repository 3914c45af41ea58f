"""The model's part of the bundle contract: its input, preprocessing, output roles and decisions
(specs/model-contract.md). The packager records one per model version at create-model and writes it into every
bundle's manifest (`model.spec`); the agent preprocesses and maps results by it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_LABELS = [{"name": "background", "color": "#FFFFFF"}, {"name": "anomaly", "color": "#FF0000"}]
MODEL_TYPES = ("anomalib", "classification", "segmentation")
INTERPOLATION_NAMES = ("nearest", "linear", "cubic", "area")
CLASSIFICATION_OUTPUTS = ("probabilities", "logits")


class ModelSpecError(ValueError):
    """A spec that breaks the contract; the message names the field and the rule."""


@dataclass
class ModelSpec:
    """Everything the compiler and the agent need to know about a model version, beyond its graph."""

    model_type: str
    input_name: str
    input_size: list[int]  # [H, W] the compiler pins
    outputs: dict[str, str]  # role → graph output name
    interpolation: str = "linear"
    scale: float = 1 / 255
    normalize: bool = True
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    threshold: float = 0.5
    # Whether the metadata gave `threshold`: then it decides, else a model's own pred_label does (when it has one).
    # Bundles and records from before this field have no key for it, and were decided by threshold: True there.
    threshold_configured: bool = False
    anomalous_class_index: int = 1
    classification_output: str = "probabilities"
    labels: list[dict[str, str]] = field(default_factory=lambda: [dict(x) for x in DEFAULT_LABELS])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        """A spec as stored (registry row, manifest), checked field by field (ModelSpecError says which)."""
        if not isinstance(data, dict):
            raise ModelSpecError(f"must be an object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelSpecError(f"unknown field {unknown[0]!r}: re-package the model with a matching packager")
        missing = [name for name in ("model_type", "input_name", "input_size", "outputs") if name not in data]
        if missing:
            raise ModelSpecError(f"'{missing[0]}' is missing")
        spec = cls(**{"threshold_configured": True, **data})
        spec.check()
        return spec

    def check(self) -> None:
        """The rules every stored spec keeps (ModelSpecError names the field)."""
        _one_of(self.model_type, MODEL_TYPES, "model_type")
        _one_of(self.interpolation, INTERPOLATION_NAMES, "interpolation")
        _one_of(self.classification_output, CLASSIFICATION_OUTPUTS, "classification_output")
        if not isinstance(self.input_name, str) or not self.input_name:
            raise ModelSpecError("'input_name' must be a non-empty string")
        size = self.input_size
        if not (isinstance(size, list) and len(size) == 2 and all(_whole(v) and v > 0 for v in size)):
            raise ModelSpecError(f"'input_size' must be [height, width] in pixels, got {str(size)[:40]}")
        if (
            not isinstance(self.outputs, dict)
            or not self.outputs
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.outputs.items())
        ):
            raise ModelSpecError("'outputs' must map each role to a graph output name")
        for name in ("scale", "threshold"):
            if not _finite(getattr(self, name)):
                raise ModelSpecError(f"'{name}' must be a finite number")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not (isinstance(value, list) and len(value) == 3 and all(_finite(v) for v in value)):
                raise ModelSpecError(f"'{name}' must be three numbers (R, G, B)")
        if not all(v != 0 for v in self.std):
            raise ModelSpecError("'std' must not hold a zero")
        if not isinstance(self.normalize, bool) or not isinstance(self.threshold_configured, bool):
            raise ModelSpecError("'normalize' and 'threshold_configured' must be true or false")
        if not _whole(self.anomalous_class_index) or self.anomalous_class_index < 0:
            raise ModelSpecError("'anomalous_class_index' must be a whole number ≥ 0")
        labels = self.labels
        if not (isinstance(labels, list) and labels and all(_label(x) for x in labels)):
            raise ModelSpecError("'labels' must be a non-empty list of {name, color}")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ModelSpecError(f"'{name}' must be one of {', '.join(allowed)}, got {str(value)[:40]!r}")


def _label(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("name"), str) and isinstance(value.get("color"), str)
