"""Projects and model versions against real SQLite, and the import contract."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.api.errors import ConflictException, ResourceNotFoundException, ValidationException
from compiler.api.validation import check_response
from tests.models import anomalib_like, anomalib_with_own_decisions, classifier


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def test_project_lifecycle(service) -> None:
    created = service.call("CreateProject", {"ProjectName": "boards"})
    check_response("CreateProject", created)
    assert created["ProjectMetadata"]["ProjectArn"] == "arn:aws:lookoutvision:us-east-1:000000000000:project/boards"
    with pytest.raises(ConflictException):
        service.call("CreateProject", {"ProjectName": "boards"})
    service.call("CreateProject", {"ProjectName": "cans"})
    listed = service.call("ListProjects", {})
    check_response("ListProjects", listed)
    assert [p["ProjectName"] for p in listed["Projects"]] == ["cans", "boards"]
    service.call("DeleteProject", {"ProjectName": "cans"})
    with pytest.raises(ResourceNotFoundException) as error:
        service.call("DescribeProject", {"ProjectName": "cans"})
    assert error.value.fields == {"ResourceId": "cans", "ResourceType": "PROJECT"}


def test_database_is_sqlite_in_wal_mode(service) -> None:
    conn = sqlite3.connect(service.settings.database_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_model_versions_are_numbered_content_addressed_and_latest_resolves(service, tmp_path: Path) -> None:
    service.call("CreateProject", {"ProjectName": "boards"})
    file = _save(classifier(), tmp_path)
    first = service.call("CreateModel", {"ProjectName": "boards", "ModelFile": file, "Description": "first"})
    check_response("CreateModel", first)
    second = service.call("CreateModel", {"ProjectName": "boards", "ModelFile": file})
    assert (first["ModelMetadata"]["ModelVersion"], second["ModelMetadata"]["ModelVersion"]) == ("1", "2")
    assert second["ModelMetadata"]["ModelArn"] == "arn:aws:lookoutvision:us-east-1:000000000000:model/boards/2"
    latest = service.call("DescribeModel", {"ProjectName": "boards", "ModelVersion": "latest"})
    check_response("DescribeModel", latest)
    description = latest["ModelDescription"]
    assert description["ModelVersion"] == "2" and description["ModelType"] == "classification"
    blobs = list(service.settings.blob_dir.rglob("*.onnx"))
    assert [b.stem for b in blobs] == [description["ModelSha256"]]  # stored once, named by sha256
    service.call("DeleteModel", {"ProjectName": "boards", "ModelVersion": "1"})
    assert [m["ModelVersion"] for m in service.call("ListModels", {"ProjectName": "boards"})["Models"]] == ["2"]
    with pytest.raises(ResourceNotFoundException, match="Model version '1' does not exist"):
        service.call("DescribeModel", {"ProjectName": "boards", "ModelVersion": "1"})


@pytest.mark.parametrize(
    ("model", "metadata", "expected"),
    [
        (classifier(), {}, ("classification", {"class_scores": "scores"}, "probabilities")),
        (classifier(softmax=False), {}, ("classification", {"class_scores": "scores"}, "logits")),
        (anomalib_like([1]), {}, ("anomalib", {"pred_score": "pred_score", "anomaly_map": "anomaly_map"}, None)),
        (anomalib_like([1, 1], with_map=False), {}, ("anomalib", {"pred_score": "pred_score"}, None)),
    ],
)
def test_model_type_is_detected_from_outputs(service, tmp_path, model, metadata, expected) -> None:
    service.call("CreateProject", {"ProjectName": "p"})
    service.call("CreateModel", {"ProjectName": "p", "ModelFile": _save(model, tmp_path), "ModelMetadata": metadata})
    spec = service.registry.get_model("p", "latest").spec
    assert (spec.model_type, spec.outputs) == expected[:2]
    if expected[2]:
        assert spec.classification_output == expected[2]


@pytest.mark.parametrize(
    ("model", "request_extra", "words"),
    [
        (classifier(channels=1), {}, "must be NCHW with 3 channels"),
        (
            classifier(batch=4, batch_in_reshape=True),
            {},
            "fixed batch of 4, and the graph does not give a single image the outputs it gives it in that batch",
        ),
        (
            anomalib_with_own_decisions(normalise=False),
            {},
            "follow anomalib 2.x's convention (pred_label), whose exports normalise the image inside the graph",
        ),
        (classifier(size="S"), {}, "dynamic height/width"),
        (classifier(size=64), {"ModelMetadata": {"input_size": [128, 128]}}, "contradicts the model's input shape"),
        (classifier(classes=2), {"ModelMetadata": {"anomalous_class_index": 2}}, "out of range"),
        (anomalib_like([1, 2]), {}, "'pred_score' must be [N] or [N,1]"),
        (classifier(), {"ModelType": "anomalib"}, "need a 'pred_score' output"),
        (classifier(), {"ModelType": "segmentation"}, "exactly one [N,K,h,w] output"),
        (
            classifier(),
            {
                "ModelMetadata": {
                    "labels": [{"name": "scratch", "color": "#FF0000"}, {"name": "dent", "color": "#00FF00"}]
                }
            },
            "must be 'background'",
        ),
    ],
)
def test_models_outside_the_contract_are_refused(service, tmp_path, model, request_extra, words) -> None:
    service.call("CreateProject", {"ProjectName": "p"})
    with pytest.raises(ValidationException) as error:
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": _save(model, tmp_path), **request_extra})
    assert words in error.value.message
    assert service.call("ListModels", {"ProjectName": "p"})["Models"] == []


def test_anomalib_2_exports_are_read_by_their_own_convention(service, tmp_path) -> None:
    """Normalisation and the resize to the trained size are inside the graph: the agent neither normalises again
    nor needs to be told the size; an explicit metadata value still wins."""
    service.call("CreateProject", {"ProjectName": "p"})
    for model, metadata in [
        (anomalib_with_own_decisions(size=48, dynamic=True), {}),
        (anomalib_with_own_decisions(size=48, normalise=False), {"normalize": False}),
        (anomalib_with_own_decisions(size=48), {"normalize": True}),
        (anomalib_like([1]), {}),  # anomalib 1.x: no normalisation inside, ImageNet's by default
    ]:
        service.call(
            "CreateModel", {"ProjectName": "p", "ModelFile": _save(model, tmp_path), "ModelMetadata": metadata}
        )
    specs = [service.registry.get_model("p", str(v)).spec for v in range(1, 5)]
    assert [(s.input_size, s.normalize) for s in specs] == [
        ([48, 48], False),
        ([48, 48], False),
        ([48, 48], True),
        ([64, 64], True),
    ]


def test_a_fixed_batch_the_graph_does_not_depend_on_is_accepted(service, tmp_path) -> None:
    service.call("CreateProject", {"ProjectName": "p"})
    service.call("CreateModel", {"ProjectName": "p", "ModelFile": _save(classifier(batch=2), tmp_path)})
    assert service.registry.get_model("p", "1").spec.input_size == [64, 64]


def test_dynamic_size_is_accepted_with_metadata(service, tmp_path) -> None:
    service.call("CreateProject", {"ProjectName": "p"})
    service.call(
        "CreateModel",
        {
            "ProjectName": "p",
            "ModelFile": _save(classifier(size="S"), tmp_path),
            "ModelMetadata": {"input_size": [96, 128]},
        },
    )
    assert service.registry.get_model("p", "1").spec.input_size == [96, 128]


def test_files_that_are_not_onnx_are_refused(service, tmp_path) -> None:
    service.call("CreateProject", {"ProjectName": "p"})
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ValidationException, match="could not be read as ONNX"):
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(junk)})
    with pytest.raises(ValidationException, match="does not exist"):
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(tmp_path / "missing.onnx")})


def test_torch_style_external_weights_beside_the_model_are_stored_self_contained(service, tmp_path) -> None:
    """torch ≥ 2 and anomalib write weights to model.onnx.data beside model.onnx; the stored model holds them."""
    from onnx.numpy_helper import to_array

    export = tmp_path / "export"
    export.mkdir()
    onnx.save(
        classifier(), export / "model.onnx", save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    assert (export / "model.onnx.data").stat().st_size > 0
    service.call("CreateProject", {"ProjectName": "p"})
    service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(export / "model.onnx")})
    shutil.rmtree(export)  # nothing is read from the user's folder after create-model
    stored = onnx.load(
        str(service.registry.blob_path(service.registry.get_model("p", "1").sha256)), load_external_data=False
    )
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in stored.graph.initializer)
    for before, after in zip(classifier().graph.initializer, stored.graph.initializer, strict=True):
        assert np.array_equal(to_array(before), to_array(after))


def test_external_weights_larger_than_their_data_file_are_refused(service, tmp_path) -> None:
    onnx.save(classifier(), tmp_path / "model.onnx", save_as_external_data=True, location="w.data", size_threshold=0)
    data = tmp_path / "w.data"
    data.write_bytes(data.read_bytes()[:100])  # a truncated copy
    service.call("CreateProject", {"ProjectName": "p"})
    with pytest.raises(ValidationException, match="the data file is truncated"):
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(tmp_path / "model.onnx")})


def test_a_model_with_an_operator_the_compiler_cannot_convert_is_refused_at_create_model(service, tmp_path) -> None:
    from onnx import helper

    model = classifier()
    model.graph.node.insert(0, helper.make_node("FastGelu", ["input"], ["input_gelu"], domain="com.microsoft"))
    model.graph.node[1].input[0] = "input_gelu"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    service.call("CreateProject", {"ProjectName": "p"})
    with pytest.raises(ValidationException, match=r"cannot convert: com\.microsoft\.FastGelu \(1 node\)"):
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": _save(model, tmp_path)})
    assert service.call("ListModels", {"ProjectName": "p"})["Models"] == []


def test_every_idempotent_operation_replays_its_first_result(service, classifier_file) -> None:
    """Each operation with a ClientToken stores its result with its effect; a retry gets that result."""
    calls = [
        ("CreateProject", {"ProjectName": "p"}),
        ("CreateModel", {"ProjectName": "p", "ModelFile": str(classifier_file)}),
        ("DeleteModel", {"ProjectName": "p", "ModelVersion": "1"}),
        ("DeleteProject", {"ProjectName": "p"}),
    ]
    for operation, params in calls:
        first = service.call(operation, {**params, "ClientToken": f"{operation}-1"})
        assert service.call(operation, {**params, "ClientToken": f"{operation}-1"}) == first, operation
    assert service.call("ListProjects", {})["Projects"] == []


def test_delete_is_refused_while_a_job_is_queued(queue_only, tmp_path, classifier_file) -> None:
    from tests.conftest import X86_CONFIGURATION

    queue_only.call("CreateProject", {"ProjectName": "p"})
    queue_only.call("CreateModel", {"ProjectName": "p", "ModelFile": str(classifier_file)})
    queue_only.call(
        "StartModelPackagingJob",
        {"ProjectName": "p", "ModelVersion": "1", "JobName": "j1", "Configuration": X86_CONFIGURATION},
    )
    with pytest.raises(ConflictException, match="while model packaging jobs are running: j1"):
        queue_only.call("DeleteProject", {"ProjectName": "p"})
    with pytest.raises(ConflictException, match="model version 1"):
        queue_only.call("DeleteModel", {"ProjectName": "p", "ModelVersion": "1"})
