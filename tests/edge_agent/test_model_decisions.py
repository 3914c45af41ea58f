"""anomalib exports carry their own decisions: the agent's label and mask are the model's `pred_label` and
`pred_mask` (thresholds baked in, here not 0.5), unless a threshold is configured; and a PatchCore-style model,
whose nearest-neighbour search compiles to the TVM runtime's sort kernels, packages and serves in the agent."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compiler.models.sample_images import held_out_set
from edge_agent.bundle.model_spec import ModelSpec
from edge_agent.models.preprocess import Preprocessor
from tests.agent_harness import AgentProcess, PackagingRequest, package_models, wait_for_status
from tests.conftest import make_service, stop_workers
from tests.models import anomalib_with_own_decisions, nearest_neighbour_score

DECIDING = "com.example.OwnDecisions"
NEAREST = "com.example.NearestNeighbours"
SIZE = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[onnx.ModelProto, Path]]:
    """Both models packaged for x86_64 by real jobs: component → (ONNX model, model.zip)."""
    work = tmp_path_factory.mktemp("decisions")
    built = {DECIDING: anomalib_with_own_decisions(SIZE), NEAREST: nearest_neighbour_score(SIZE)}
    requests = []
    for component, model in built.items():
        onnx.save(model, work / f"{component}.onnx")
        requests.append(PackagingRequest("decisions", work / f"{component}.onnx", {}, component, "1.0.0"))
    service = make_service(work / "data")
    try:
        bundles = package_models(service, requests, work / "gg")
    finally:
        stop_workers(service)
    return {component: (model, bundles[f"{component}-1.0.0"]) for component, model in built.items()}


@pytest.fixture(scope="module")
def agent(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    for component, (_, bundle) in models.items():
        (folder / f"{component}.zip").write_bytes(bundle.read_bytes())
    with AgentProcess(tmp_path_factory.mktemp("agent"), models_dir=folder) as process:
        yield process


def _onnx_runtime(model: onnx.ModelProto, bundle: Path, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The model's own outputs for `rgb`, preprocessed exactly as the bundle's spec says."""
    with zipfile.ZipFile(bundle) as zf:
        spec = json.loads(zf.read("manifest.json"))["model"]["spec"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(
        zip(names, session.run(None, {"input": Preprocessor.from_spec(ModelSpec.from_dict(spec))(rgb)}), strict=True)
    )


def _detect(stub, pb, component: str, rgb: np.ndarray):
    bitmap = pb.Bitmap(width=rgb.shape[1], height=rgb.shape[0], byte_data=rgb.tobytes())
    return stub.DetectAnomalies(pb.DetectAnomaliesRequest(model_component=component, bitmap=bitmap))


def _images() -> list[np.ndarray]:
    return [cv2.resize(s.rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for s in held_out_set(3, seed=5)]


def test_label_and_mask_are_the_models_own_unless_a_threshold_is_configured(agent, models, client_stubs) -> None:
    pb, pb_grpc = client_stubs
    model, bundle = models[DECIDING]
    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        stub.StartModel(pb.StartModelRequest(model_component=DECIDING))
        wait_for_status(stub, pb, DECIDING, pb.RUNNING)
        decided_by_score_alone = 0
        for rgb in _images():
            own = _onnx_runtime(model, bundle, rgb)
            result = _detect(stub, pb, DECIDING, rgb).detect_anomaly_result
            assert result.is_anomalous == bool(own["pred_label"][0])
            assert result.anomaly_threshold == pytest.approx(0.5)
            assert result.anomaly_score == pytest.approx(float(own["pred_score"][0]), abs=1e-3)
            decided_by_score_alone += (result.anomaly_score >= 0.5) != result.is_anomalous
            painted = np.frombuffer(result.anomaly_mask.byte_data, np.uint8).reshape(SIZE, SIZE, 3)
            anomalous_pixels = np.all(painted == (255, 0, 0), axis=-1)
            mismatch = np.mean(anomalous_pixels != own["pred_mask"][0, 0])
            assert mismatch <= 0.001, f"{mismatch:.2%} of the mask differs from the model's own pred_mask"
            assert not np.array_equal(anomalous_pixels, own["anomaly_map"][0, 0] >= 0.5) or not anomalous_pixels.any()
        assert decided_by_score_alone, "no image tells the model's pred_label from score >= 0.5"

        agent.reconfigure({"Models": {DECIDING: {"Threshold": 0.52}}})  # an operator's threshold wins
        try:
            for rgb in _images():
                result = _detect(stub, pb, DECIDING, rgb).detect_anomaly_result
                assert result.anomaly_threshold == pytest.approx(0.52)
                assert result.is_anomalous == (result.anomaly_score >= np.float32(0.52))
        finally:
            agent.reconfigure({})


def test_a_nearest_neighbour_model_with_topk_serves_in_the_agent(agent, models, client_stubs) -> None:
    """TopK compiles to tvm.contrib.sort.topk, which lives in libtvm_runtime_extra: the agent (TVM runtime
    library alone) loads it, and the packaging parity check ran in that same configuration."""
    pb, pb_grpc = client_stubs
    model, bundle = models[NEAREST]
    with zipfile.ZipFile(bundle) as zf:
        parity = json.loads(zf.read("manifest.json"))["parity"]
    assert parity["checked"] == "at packaging"
    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        stub.StartModel(pb.StartModelRequest(model_component=NEAREST))
        wait_for_status(stub, pb, NEAREST, pb.RUNNING)
        for rgb in _images():
            own = _onnx_runtime(model, bundle, rgb)
            result = _detect(stub, pb, NEAREST, rgb).detect_anomaly_result
            assert result.anomaly_score == pytest.approx(float(own["pred_score"][0]), abs=1e-4)
