"""Golden inputs and the parity check of a compiled module against ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnx

from compiler.model_contract import ModelSpec
from edge_agent.preprocess import Preprocessor

# Float outputs must agree within ATOL + RTOL * |reference|; boolean outputs (masks) may differ in at most
# MAX_MASK_MISMATCH of their elements, since a value within float rounding of the threshold can flip.
ATOL = 1e-3
RTOL = 1e-3
MAX_MASK_MISMATCH = 1e-3


@dataclass(frozen=True)
class ParityReport:
    """Worst differences per output; `ok` when every output is within tolerance."""

    max_abs_error: dict[str, float]
    mismatch_fraction: dict[str, float]
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def golden_input(spec: ModelSpec, seed: int = 7) -> np.ndarray:
    """A deterministic input: a smooth random RGB image put through the model's own preprocessing."""
    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    coarse = rng.integers(0, 256, size=(max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return Preprocessor.from_spec(spec.to_dict())(image)


def run_onnx_runtime(model: onnx.ModelProto, spec: ModelSpec, tensor: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {spec.input_name: tensor}), strict=True))


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> ParityReport:
    """Compare outputs by name."""
    max_abs, mismatch, failures = {}, {}, []
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None or got.shape != ref.shape:
            failures.append(f"output '{name}': expected shape {ref.shape}, got {None if got is None else got.shape}")
            continue
        if ref.dtype == np.bool_:
            frac = float(np.mean(ref != got.astype(bool)))
            mismatch[name] = frac
            if frac > MAX_MASK_MISMATCH:
                failures.append(f"output '{name}': {frac:.4%} of elements differ (allowed {MAX_MASK_MISMATCH:.2%})")
            continue
        err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        max_abs[name] = float(err.max(initial=0.0))
        bound = ATOL + RTOL * np.abs(ref.astype(np.float64))
        if np.any(err > bound):
            failures.append(f"output '{name}': max |error| {max_abs[name]:.3g} exceeds {ATOL} + {RTOL}·|reference|")
    return ParityReport(max_abs, mismatch, failures)
