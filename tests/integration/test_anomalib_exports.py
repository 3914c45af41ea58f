"""anomalib 2.x models as a user makes them: PaDiM, PatchCore, FastFlow and STFPM fitted with anomalib's Engine on
generated texture tiles and exported with anomalib's own ONNX exporter, unmodified (tests/anomalib_fit.py), then
create-model with no metadata file, a packaging job, `lookout-edge score` and the agent. Every score, label and
mask must be anomalib's own: its exported graph run by ONNX Runtime on the image as anomalib feeds it (RGB
scaled to 0..1; the graph normalises and resizes itself)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from compiler.api.errors import ValidationException
from compiler.models.sample_images import read_rgb
from tests.agent_harness import REPO, AgentProcess, PackagingRequest, package_models, wait_for_status
from tests.anomalib_fit import BATCH1_EXPORT
from tests.conftest import make_service, stop_workers

pytest.importorskip("anomalib", reason="anomalib (a test extra) is not installed: pip install -e '.[test]'")

pytestmark = pytest.mark.slow
EXPORTS = {"padim": "padim", "patchcore": "patchcore-batch1", "fastflow": "fastflow", "stfpm": "stfpm"}
THRESHOLD = 0.5  # anomalib 2.x bakes its thresholds into the graph: its pred_score is normalised to this
NEAR_THRESHOLD = 2e-3  # a score this close to the threshold may take either side after compilation


def _onnx(export_root: Path) -> Path:
    return export_root / "weights" / "onnx" / "model.onnx"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anomalib")
    done = subprocess.run(
        [sys.executable, "-m", "tests.anomalib_fit", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def packaged(fitted, tmp_path_factory) -> dict[str, Path]:
    """Each model packaged for x86_64 from a model version created without metadata: name → model.zip."""
    service = make_service(tmp_path_factory.mktemp("service"), max_workers=2)
    requests = [
        PackagingRequest("anomalib", _onnx(fitted / folder), {}, f"com.example.{name.title()}", "1.0.0")
        for name, folder in EXPORTS.items()
    ]
    try:
        bundles = package_models(service, requests, tmp_path_factory.mktemp("gg"))
    finally:
        stop_workers(service)
    return {name: bundles[f"com.example.{name.title()}-1.0.0"] for name in EXPORTS}


def _anomalib_outputs(model: Path, image: Path) -> dict[str, np.ndarray]:
    """anomalib's own inference: its graph on the RGB image scaled to 0..1, NCHW."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    tensor = (read_rgb(image).astype(np.float32) / 255).transpose(2, 0, 1)[None]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": tensor}), strict=True))


def _images(fitted: Path) -> list[Path]:
    return sorted((fitted / "images" / "test").glob("*.png")) + sorted((fitted / "images" / "bad").glob("*.png"))


def test_patchcores_default_export_is_refused_with_the_command_that_fixes_it(fitted, tmp_path) -> None:
    service = make_service(tmp_path / "data")
    service.call("CreateProject", {"ProjectName": "p"})
    with pytest.raises(ValidationException) as refused:
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(_onnx(fitted / "patchcore"))})
    message = refused.value.message
    assert "fixed batch of 2" in message
    command = f"input_size=({BATCH1_EXPORT['input_size'][0]}, {BATCH1_EXPORT['input_size'][1]}), onnx_kwargs="
    assert command + '{"dynamic_axes": {}}' in message  # what tests/anomalib_fit.py ran for patchcore-batch1


def test_exports_are_read_by_anomalib_2s_convention_without_a_metadata_file(fitted, tmp_path) -> None:
    service = make_service(tmp_path / "data")
    service.call("CreateProject", {"ProjectName": "p"})
    for folder in EXPORTS.values():
        metadata = service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(_onnx(fitted / folder))})
        spec = service.registry.get_model("p", metadata["ModelMetadata"]["ModelVersion"]).spec
        assert (spec.model_type, spec.normalize, spec.input_size, spec.threshold_configured) == (
            "anomalib",
            False,  # the graph normalises: normalising again was the silent AUROC-0.5 bug
            [256, 256],  # the size anomalib's pre-processor resizes to (the exported input is dynamic)
            False,  # the model's own pred_label decides
        ), folder


def _check(name: str, image: Path, own: dict[str, np.ndarray], score: float, label: bool) -> None:
    reference = float(own["pred_score"].reshape(-1)[0])
    assert score == pytest.approx(reference, abs=2e-3), f"{name} {image.name}"
    if abs(reference - THRESHOLD) > NEAR_THRESHOLD:
        assert label == bool(own["pred_label"].reshape(-1)[0]), f"{name} {image.name}: score {reference}"


def test_score_gives_anomalibs_own_scores_and_labels(fitted, packaged) -> None:
    row = re.compile(r"^(\S+)\s+([\d.]+)\s+([\d.]+)\s+(ANOMALOUS|normal)\s", re.MULTILINE)
    images = _images(fitted)
    for name, bundle in packaged.items():
        done = subprocess.run(
            ["lookout-edge", "score", "--bundle", str(bundle), *map(str, images)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        results = {Path(m[1]).name: (float(m[2]), m[4] == "ANOMALOUS") for m in row.finditer(done.stdout)}
        assert len(results) == len(images), done.stdout
        for image in images:
            own = _anomalib_outputs(_onnx(fitted / EXPORTS[name]), image)
            _check(name, image, own, *results[image.name])


def test_the_agent_serves_anomalibs_own_scores_labels_and_masks(fitted, packaged, client_stubs, tmp_path) -> None:
    pb, pb_grpc = client_stubs
    models = tmp_path / "models"
    models.mkdir()
    for name, bundle in packaged.items():
        (models / f"{name}.zip").write_bytes(bundle.read_bytes())
    images = _images(fitted)
    with AgentProcess(tmp_path / "agent", models_dir=models) as agent, agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        for name in packaged:
            component = f"com.example.{name.title()}"
            stub.StartModel(pb.StartModelRequest(model_component=component))
            wait_for_status(stub, pb, component, pb.RUNNING)
            mask_mismatch = []
            for image in images:
                rgb = read_rgb(image)
                bitmap = pb.Bitmap(width=rgb.shape[1], height=rgb.shape[0], byte_data=rgb.tobytes())
                result = stub.DetectAnomalies(
                    pb.DetectAnomaliesRequest(model_component=component, bitmap=bitmap)
                ).detect_anomaly_result
                own = _anomalib_outputs(_onnx(fitted / EXPORTS[name]), image)
                _check(name, image, own, result.anomaly_score, result.is_anomalous)
                painted = np.frombuffer(result.anomaly_mask.byte_data, np.uint8).reshape(*rgb.shape)
                mask_mismatch.append(np.mean(np.all(painted == (255, 0, 0), axis=-1) != own["pred_mask"][0, 0]))
            assert max(mask_mismatch) <= 0.005, f"{name}: up to {max(mask_mismatch):.2%} of a mask differs"
