"""The bundled reference model is realistic in size and actually separates defects from normal images."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from compiler.models.reference_model import _image_tensor, build_reference_model
from compiler.models.sample_images import held_out_set


def _auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(wins / (len(positives) * len(negatives)))


def test_auroc_on_held_out_normal_versus_synthetic_defects(reference_model) -> None:
    session = ort.InferenceSession(str(reference_model.model_path), providers=["CPUExecutionProvider"])
    samples = held_out_set(30, seed=100)
    scores = np.array([session.run(["pred_score"], {"input": _image_tensor(s.rgb)})[0][0] for s in samples])
    labels = np.array([s.is_anomalous for s in samples])
    auroc = _auroc(scores[labels], scores[~labels])
    print(f"reference model AUROC on {len(samples)} held-out images: {auroc:.3f}")
    assert auroc >= 0.9


def test_anomalib_convention_and_size(reference_model) -> None:
    model = onnx.load(str(reference_model.model_path))
    assert [o.name for o in model.graph.output] == ["pred_score", "anomaly_map", "pred_mask"]
    assert model.ir_version <= 10
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    weights = {t.name: t for t in model.graph.initializer}
    # ResNet-18 topology: 20 convolutions in the backbone (+2 smoothing), about 11 M backbone weights.
    backbone = [c for c in convs if not c.input[1].startswith("gauss")]
    params = sum(int(np.prod(weights[c.input[1]].dims)) for c in backbone)
    assert len(backbone) == 20 and 10e6 < params < 12e6


def test_building_is_deterministic(reference_model, tmp_path) -> None:
    again = build_reference_model(tmp_path)
    assert again.model_path.read_bytes() == reference_model.model_path.read_bytes()
