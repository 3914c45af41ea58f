"""The published proto is wire-compatible with AWS's, and the agent's committed modules match it."""

from __future__ import annotations

import subprocess

import pytest

from tests.agent_harness import REPO

# (message, field) → tag, from specs/lookout-for-vision-edge.md §1.2.
FIELD_NUMBERS = {
    ("SharedMemoryHandle", "name"): 1,
    ("SharedMemoryHandle", "size"): 2,
    ("SharedMemoryHandle", "offset"): 3,
    ("Bitmap", "width"): 1,
    ("Bitmap", "height"): 2,
    ("Bitmap", "byte_data"): 3,
    ("Bitmap", "shared_memory_handle"): 4,
    ("AnomalyMaskParams", "shared_memory_handle"): 2,
    ("PixelAnomaly", "total_percentage_area"): 1,
    ("PixelAnomaly", "hex_color"): 2,
    ("Anomaly", "name"): 1,
    ("Anomaly", "pixel_anomaly"): 2,
    ("DetectAnomaliesRequest", "model_component"): 1,
    ("DetectAnomaliesRequest", "bitmap"): 2,
    ("DetectAnomaliesRequest", "anomaly_mask_params"): 3,
    ("DetectAnomalyResult", "is_anomalous"): 1,
    ("DetectAnomalyResult", "confidence"): 2,
    ("DetectAnomalyResult", "anomaly_mask"): 3,
    ("DetectAnomalyResult", "anomalies"): 4,
    ("DetectAnomalyResult", "anomaly_score"): 5,
    ("DetectAnomalyResult", "anomaly_threshold"): 6,
    ("DetectAnomaliesResponse", "detect_anomaly_result"): 1,
    ("ModelDescription", "model_component"): 1,
    ("ModelDescription", "lookout_vision_model_arn"): 2,
    ("ModelDescription", "status"): 3,
    ("ModelDescription", "status_message"): 4,
    ("ModelMetadata", "model_component"): 1,
    ("ModelMetadata", "lookout_vision_model_arn"): 2,
    ("ModelMetadata", "status"): 3,
    ("ModelMetadata", "status_message"): 4,
    ("StartModelRequest", "model_component"): 1,
    ("StartModelResponse", "status"): 1,
    ("StopModelRequest", "model_component"): 1,
    ("StopModelResponse", "status"): 1,
    ("ListModelsResponse", "models"): 1,
    ("DescribeModelRequest", "model_component"): 1,
    ("DescribeModelResponse", "model_description"): 1,
}


@pytest.mark.parametrize(("message", "field"), sorted(FIELD_NUMBERS))
def test_field_numbers_match_aws(client_stubs, message: str, field: str) -> None:
    pb = client_stubs[0]
    assert pb.DESCRIPTOR.package == "AWS.LookoutVision"
    assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number == FIELD_NUMBERS[(message, field)]


def test_service_enum_and_oneof(client_stubs) -> None:
    pb, pb_grpc = client_stubs
    service = pb.DESCRIPTOR.services_by_name["EdgeAgent"]
    assert [m.name for m in service.methods] == [
        "DetectAnomalies",
        "StartModel",
        "StopModel",
        "ListModels",
        "DescribeModel",
    ]
    assert (pb.STOPPED, pb.STARTING, pb.RUNNING, pb.FAILED, pb.STOPPING) == (0, 1, 2, 3, 4)
    assert [f.name for f in pb.Bitmap.DESCRIPTOR.oneofs_by_name["data"].fields] == ["byte_data", "shared_memory_handle"]
    assert hasattr(pb_grpc, "EdgeAgentStub")


def test_committed_agent_modules_match_the_proto(tmp_path) -> None:
    subprocess.run([str(REPO / "scripts" / "generate-protos.sh"), str(tmp_path)], check=True)
    for name in ("edge_agent_pb2.py", "edge_agent_pb2_grpc.py"):
        committed = (REPO / "edge_agent" / "generated" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"run scripts/generate-protos.sh: {name} is stale"
