"""The Edge Agent API over a real Unix socket, driven by stubs generated from protos/ as AWS's docs do.

One agent process serves the module: the reference model (1.0.0) and three variants from its models folder.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import shared_memory

import cv2
import grpc
import numpy as np
import pytest

from compiler.models.sample_images import held_out_set
from tests.agent_harness import AgentProcess, edited_copy, ensure_running
from tests.conftest import BOARDS, SQRT

EDITED = "com.example.EditedInput"  # manifest says 96×96, the module was compiled for 64×64
TAMPERED = "com.example.Tampered"  # model.so changed after packaging


@pytest.fixture(scope="module")
def agent(packaged, tmp_path_factory):
    work = tmp_path_factory.mktemp("agent-service")
    models = work / "models"
    models.mkdir()
    shutil.copy(packaged[f"{BOARDS}-1.0.0"], models / "boards.zip")
    shutil.copy(packaged[f"{SQRT}-1.0.0"], models / "sqrt.zip")
    edited_copy(packaged[f"{SQRT}-1.0.0"], models / "edited", EDITED, input_size=[96, 96])
    tampered = edited_copy(packaged[f"{SQRT}-1.0.0"], models / "tampered", TAMPERED)
    library = tampered / "model.so"
    content = bytearray(library.read_bytes())
    content[-1] ^= 0xFF  # same size, other bytes: only the sha256 tells
    library.write_bytes(bytes(content))
    with AgentProcess(work, models_dir=models) as process:
        yield process


@pytest.fixture(scope="module")
def stub(agent, client_stubs):
    pb_grpc = client_stubs[1]
    with agent.channel() as channel:
        yield pb_grpc.EdgeAgentStub(channel)


@pytest.fixture(scope="module")
def pb(client_stubs):
    return client_stubs[0]


@pytest.fixture(scope="module")
def samples():
    normal, anomalous = held_out_set(1, seed=5)
    return normal, anomalous


def ensure_stopped(stub, pb, name: str):
    if stub.DescribeModel(pb.DescribeModelRequest(model_component=name)).model_description.status == pb.RUNNING:
        assert stub.StopModel(pb.StopModelRequest(model_component=name)).status == pb.STOPPED


def detect(stub, pb, name: str, rgb: np.ndarray, **request):
    height, width = rgb.shape[:2]
    bitmap = pb.Bitmap(width=width, height=height, byte_data=rgb.tobytes())
    return stub.DetectAnomalies(pb.DetectAnomaliesRequest(model_component=name, bitmap=bitmap, **request))


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def assert_matches_direct(result, direct) -> None:
    """The agent's answer equals running the same compiled module in this process on the same image."""
    assert result.anomaly_score == np.float32(direct.anomaly_score)
    assert result.anomaly_threshold == np.float32(direct.anomaly_threshold)
    assert result.confidence == np.float32(direct.confidence)
    assert result.is_anomalous == direct.is_anomalous
    assert [(a.name, a.pixel_anomaly.hex_color) for a in result.anomalies] == [
        (a.name, a.hex_color) for a in direct.anomalies
    ]
    np.testing.assert_array_equal(
        [a.pixel_anomaly.total_percentage_area for a in result.anomalies],
        np.float32([a.fraction for a in direct.anomalies]),
    )


class Segment:
    """A POSIX shared-memory segment as a client creates it (shm_open + ftruncate)."""

    def __init__(self, size: int) -> None:
        self.shm = shared_memory.SharedMemory(create=True, size=size)
        self.name = "/" + self.shm.name.lstrip("/")
        self.array = np.ndarray((size,), dtype=np.uint8, buffer=self.shm.buf)

    def close(self) -> None:
        del self.array
        self.shm.close()
        self.shm.unlink()


@pytest.fixture
def segments():
    made: list[Segment] = []

    def make(size: int) -> Segment:
        made.append(Segment(size))
        return made[-1]

    yield make
    for segment in made:
        segment.close()


def test_list_models_shows_every_component_with_its_state(stub, pb) -> None:
    models = {m.model_component: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    assert sorted(models) == sorted([BOARDS, SQRT, EDITED, TAMPERED])
    assert models[BOARDS].lookout_vision_model_arn == "arn:aws:lookoutvision:us-east-1:000000000000:model/boards/1"
    assert models[TAMPERED].status == pb.FAILED
    assert "model.so has sha256" in models[TAMPERED].status_message
    described = stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description
    assert described.model_component == BOARDS and described.status in (pb.STOPPED, pb.RUNNING)


def test_aws_example_client_flow(stub, pb, boards_model, samples, segments) -> None:
    """DescribeModel → StartModel if stopped → poll until RUNNING → DetectAnomalies → StopModel."""
    ensure_stopped(stub, pb, BOARDS)
    seen = []
    while True:
        description = stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description
        seen.append((description.status, description.status_message))
        if description.status == pb.RUNNING:
            break
        if description.status == pb.STOPPED:
            assert stub.StartModel(pb.StartModelRequest(model_component=BOARDS)).status == pb.STARTING
        elif description.status == pb.FAILED:
            pytest.fail(description.status_message)
        else:
            assert description.status == pb.STARTING
            time.sleep(0.2)
    assert seen[0][0] == pb.STOPPED
    assert any(status == pb.STARTING and "version 1.0.0" in message for status, message in seen)
    assert seen[-1][1].startswith("running version 1.0.0 with 1 worker(s)")
    assert seen[-1][1].endswith("on the TVM CPU module")  # a CPU bundle has no other engine to explain

    for sample in samples:
        direct = boards_model.detect(sample.rgb, with_mask=True)
        by_bytes = detect(stub, pb, BOARDS, sample.rgb).detect_anomaly_result
        assert by_bytes.is_anomalous == sample.is_anomalous
        assert_matches_direct(by_bytes, direct)
        assert by_bytes.anomaly_mask.width == 224 and by_bytes.anomaly_mask.height == 224
        assert by_bytes.anomaly_mask.byte_data == direct.mask.tobytes()

        image = segments(sample.rgb.nbytes)
        image.array[:] = sample.rgb.reshape(-1)
        handle = pb.SharedMemoryHandle(name=image.name, size=sample.rgb.nbytes, offset=0)
        request = pb.DetectAnomaliesRequest(
            model_component=BOARDS, bitmap=pb.Bitmap(width=224, height=224, shared_memory_handle=handle)
        )
        by_shm = stub.DetectAnomalies(request).detect_anomaly_result
        assert by_shm == by_bytes

    assert stub.StopModel(pb.StopModelRequest(model_component=BOARDS)).status == pb.STOPPED
    stopped = stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description
    assert stopped.status == pb.STOPPED
    error = rpc_error(lambda: detect(stub, pb, BOARDS, samples[0].rgb))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "STOPPED, not RUNNING" in error.details()


def test_padded_rows_in_shared_memory_read_as_gstreamer_writes_them(stub, pb, samples, segments) -> None:
    """A 225-pixel-wide frame with rows padded to 676 bytes (size = 676 × height) scores as the packed image."""
    ensure_running(stub, pb, BOARDS)
    rgb = cv2.resize(samples[0].rgb, (225, 224))
    height, stride = rgb.shape[0], 676
    segment = segments(stride * height)
    segment.array[:] = 0xEE
    segment.array.reshape(height, stride)[:, : 225 * 3] = rgb.reshape(height, -1)
    handle = pb.SharedMemoryHandle(name=segment.name, size=stride * height, offset=0)
    bitmap = pb.Bitmap(width=225, height=height, shared_memory_handle=handle)
    padded = stub.DetectAnomalies(pb.DetectAnomaliesRequest(model_component=BOARDS, bitmap=bitmap))
    assert padded.detect_anomaly_result == detect(stub, pb, BOARDS, rgb).detect_anomaly_result


def _alternate_tag_params(pb, handle) -> object:
    """AnomalyMaskParams with the handle at tag 3, as the AWS workshop proto encodes it."""
    payload = handle.SerializeToString()
    params = pb.AnomalyMaskParams()
    params.MergeFromString(bytes([3 << 3 | 2, len(payload)]) + payload)
    assert not params.HasField("shared_memory_handle")
    return params


@pytest.mark.parametrize("tag", [2, 3])
def test_mask_into_shared_memory(stub, pb, boards_model, samples, segments, tag) -> None:
    ensure_running(stub, pb, BOARDS)
    rgb = cv2.resize(samples[1].rgb, (320, 240))
    direct = boards_model.detect(rgb, with_mask=True)
    image, mask = segments(rgb.nbytes), segments(rgb.nbytes + 100)
    image.array[:] = rgb.reshape(-1)
    mask_handle = pb.SharedMemoryHandle(name=mask.name, size=rgb.nbytes, offset=100)
    params = (
        pb.AnomalyMaskParams(shared_memory_handle=mask_handle) if tag == 2 else _alternate_tag_params(pb, mask_handle)
    )
    request = pb.DetectAnomaliesRequest(
        model_component=BOARDS,
        bitmap=pb.Bitmap(
            width=320, height=240, shared_memory_handle=pb.SharedMemoryHandle(name=image.name, size=rgb.nbytes)
        ),
        anomaly_mask_params=params,
    )
    result = stub.DetectAnomalies(request).detect_anomaly_result
    assert_matches_direct(result, direct)
    assert result.anomaly_mask.WhichOneof("data") == "shared_memory_handle"
    assert result.anomaly_mask.shared_memory_handle == mask_handle
    assert (result.anomaly_mask.width, result.anomaly_mask.height) == (320, 240)
    np.testing.assert_array_equal(mask.array[100:].reshape(240, 320, 3), direct.mask)
    assert result.is_anomalous and {a.name for a in result.anomalies} == {"background", "anomaly"}


def test_4096_image_via_bytes_and_via_shared_memory(stub, pb, boards_model, samples, segments) -> None:
    ensure_running(stub, pb, BOARDS)
    big = cv2.resize(samples[1].rgb, (4096, 4096), interpolation=cv2.INTER_LINEAR)
    assert big.nbytes == 48 << 20
    direct = boards_model.detect(big, with_mask=True)
    by_bytes = detect(stub, pb, BOARDS, big).detect_anomaly_result
    assert_matches_direct(by_bytes, direct)
    assert by_bytes.anomaly_mask.byte_data == direct.mask.tobytes()

    segment = segments(big.nbytes)
    segment.array[:] = big.reshape(-1)
    handle = pb.SharedMemoryHandle(name=segment.name, size=big.nbytes, offset=0)
    request = pb.DetectAnomaliesRequest(
        model_component=BOARDS,
        bitmap=pb.Bitmap(width=4096, height=4096, shared_memory_handle=handle),
        anomaly_mask_params=pb.AnomalyMaskParams(shared_memory_handle=handle),  # the mask overwrites the image
    )
    by_shm = stub.DetectAnomalies(request).detect_anomaly_result
    assert_matches_direct(by_shm, direct)
    np.testing.assert_array_equal(segment.array.reshape(4096, 4096, 3), direct.mask)


def _invalid_requests(pb, segment_name: str):
    image = np.zeros((64, 64, 3), np.uint8).tobytes()
    handle = pb.SharedMemoryHandle
    bitmap = pb.Bitmap
    return [
        (bitmap(width=63, height=64, byte_data=image), None, "bitmap.width is 63"),
        (bitmap(width=64, height=4097, byte_data=image), None, "bitmap.height is 4097"),
        (bitmap(width=64, height=64, byte_data=image[:-1]), None, "bitmap.byte_data has 12287 bytes"),
        (bitmap(width=64, height=64), None, "set bitmap.byte_data or bitmap.shared_memory_handle"),
        (
            bitmap(width=64, height=64, shared_memory_handle=handle(name="/lookout-missing", size=12288)),
            None,
            "bitmap.shared_memory_handle.name: no shared-memory segment named '/lookout-missing'",
        ),
        (
            bitmap(width=64, height=64, shared_memory_handle=handle(name="/a/b", size=12288)),
            None,
            "bitmap.shared_memory_handle.name '/a/b' is not a POSIX shared-memory name",
        ),
        (
            bitmap(width=64, height=64, shared_memory_handle=handle(name=segment_name, size=100)),
            None,
            "bitmap.shared_memory_handle.size is 100 bytes but width*height*3",
        ),
        (
            bitmap(width=64, height=64, shared_memory_handle=handle(name=segment_name, size=12288, offset=8)),
            None,
            "offset 8 + size 12288 = 12296 bytes lies beyond the end",
        ),
        (
            bitmap(width=64, height=64, byte_data=image),
            handle(name=segment_name, size=12287),
            "anomaly_mask_params.shared_memory_handle.size is 12287 bytes",
        ),
        (
            bitmap(width=64, height=64, byte_data=image),
            handle(name=segment_name, size=12288, offset=1),
            "anomaly_mask_params.shared_memory_handle: offset 1",
        ),
    ]


def test_each_invalid_input_names_its_field(stub, pb, segments) -> None:
    ensure_running(stub, pb, SQRT)
    segment = segments(12288)
    for bitmap, mask, expected in _invalid_requests(pb, segment.name):
        request = pb.DetectAnomaliesRequest(model_component=SQRT, bitmap=bitmap)
        if mask is not None:
            request.anomaly_mask_params.shared_memory_handle.CopyFrom(mask)
        error = rpc_error(lambda request=request: stub.DetectAnomalies(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, expected
        assert expected in error.details()
    for call in calls_naming(stub, pb, ""):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "model_component is empty" in error.details()


def calls_naming(stub, pb, name: str) -> list:
    """Every RPC that takes a model_component, called with `name`."""
    return [
        lambda: stub.DescribeModel(pb.DescribeModelRequest(model_component=name)),
        lambda: stub.StartModel(pb.StartModelRequest(model_component=name)),
        lambda: stub.StopModel(pb.StopModelRequest(model_component=name)),
        lambda: detect(stub, pb, name, np.zeros((64, 64, 3), np.uint8)),
    ]


def test_unknown_components_are_not_found(stub, pb) -> None:
    for call in calls_naming(stub, pb, "com.example.Nope"):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "no model component named 'com.example.Nope'" in error.details() and BOARDS in error.details()


def test_lifecycle_preconditions(stub, pb) -> None:
    ensure_running(stub, pb, SQRT)
    error = rpc_error(lambda: stub.StartModel(pb.StartModelRequest(model_component=SQRT)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "needs STOPPED or FAILED" in error.details()
    ensure_stopped(stub, pb, SQRT)
    error = rpc_error(lambda: stub.StopModel(pb.StopModelRequest(model_component=SQRT)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "StopModel needs RUNNING" in error.details()


def test_memory_budget_refuses_to_start(agent, stub, pb) -> None:
    ensure_stopped(stub, pb, BOARDS)
    agent.reconfigure({"MemoryBudgetMiB": 10})
    try:
        error = rpc_error(lambda: stub.StartModel(pb.StartModelRequest(model_component=BOARDS)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "memory budget is 10 MiB" in error.details()
        description = stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description
        assert description.status == pb.STOPPED
    finally:
        agent.reconfigure({})


def test_full_queue_answers_resource_exhausted(agent, stub, pb, samples) -> None:
    ensure_running(stub, pb, BOARDS)
    agent.reconfigure({"MaxQueuedRequests": 1})
    try:
        wait_for_message(stub, pb, BOARDS, "up to 1 queued request(s)")
        with ThreadPoolExecutor(12) as pool:  # 12 at once against 1 worker + 1 queue slot, however fast the model
            outcomes = list(pool.map(lambda _: _code_of(lambda: detect(stub, pb, BOARDS, samples[0].rgb)), range(12)))
        assert set(outcomes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, outcomes
    finally:
        agent.reconfigure({})
    wait_for_message(stub, pb, BOARDS, "up to 32 queued request(s)")


def _code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "requests waiting" in error.details()
        return error.code()
    return grpc.StatusCode.OK


def wait_for_message(stub, pb, name: str, text: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        message = stub.DescribeModel(pb.DescribeModelRequest(model_component=name)).model_description.status_message
        if text in message and ";" not in message:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} status never read {text!r} (last: {message!r})")


def test_runtime_failure_is_unknown(stub, pb) -> None:
    """A hand-edited manifest (96×96 input for a module compiled at 64×64) fails inside the TVM runtime."""
    ensure_running(stub, pb, EDITED)
    error = rpc_error(lambda: detect(stub, pb, EDITED, np.full((96, 96, 3), 128, np.uint8)))
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert "the TVM runtime failed" in error.details() and "96 vs. 64" in error.details()
    ensure_stopped(stub, pb, EDITED)


def test_unusable_model_output_is_internal(stub, pb) -> None:
    ensure_running(stub, pb, SQRT)
    gray = detect(stub, pb, SQRT, np.full((64, 64, 3), 128, np.uint8)).detect_anomaly_result
    assert 0.0 < gray.anomaly_score <= 1.0 and not gray.anomaly_mask.width  # no mask: no map output
    error = rpc_error(lambda: detect(stub, pb, SQRT, np.zeros((64, 64, 3), np.uint8)))
    assert error.code() == grpc.StatusCode.INTERNAL and "non-finite anomaly score (nan)" in error.details()


def test_tampered_bundle_is_failed_and_never_loaded(agent, stub, pb) -> None:
    assert stub.StartModel(pb.StartModelRequest(model_component=TAMPERED)).status == pb.STARTING
    deadline = time.time() + 30
    while True:
        description = stub.DescribeModel(pb.DescribeModelRequest(model_component=TAMPERED)).model_description
        if description.status == pb.FAILED or time.time() > deadline:
            break
        time.sleep(0.1)
    assert description.status == pb.FAILED and "failed verification" in description.status_message
    assert f"{TAMPERED}: running version" not in agent.log()


def test_threshold_changes_without_restart(agent, stub, pb, samples) -> None:
    ensure_running(stub, pb, BOARDS)
    normal = samples[0].rgb
    before = detect(stub, pb, BOARDS, normal).detect_anomaly_result
    assert before.anomaly_threshold == np.float32(0.5) and not before.is_anomalous
    lowered = float(before.anomaly_score) / 2
    agent.reconfigure({"Models": {BOARDS: {"Threshold": lowered}}})
    try:
        after = detect(stub, pb, BOARDS, normal).detect_anomaly_result
        assert after.anomaly_threshold == np.float32(lowered)
        assert after.anomaly_score == before.anomaly_score
        assert after.is_anomalous and after.confidence == after.anomaly_score
    finally:
        agent.reconfigure({})
    restored = detect(stub, pb, BOARDS, normal).detect_anomaly_result
    assert restored.anomaly_threshold == np.float32(0.5)


def test_undecodable_requests_are_the_clients_error(agent, stub, pb) -> None:
    """Bytes that are not the method's message: INVALID_ARGUMENT, no traceback in the agent's log."""
    with agent.channel() as channel:
        for method in ("DetectAnomalies", "StartModel", "DescribeModel", "ListModels"):
            raw = channel.unary_unary(f"/AWS.LookoutVision.EdgeAgent/{method}")  # no (de)serialiser: bytes
            for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x12\xff\x01" + b"x" * 10):
                error = rpc_error(lambda raw=raw, garbage=garbage: raw(garbage))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, garbage, error.details())
                assert "is not a valid AWS.LookoutVision." in error.details()
    assert "Exception deserializing" not in agent.log() and "Traceback" not in agent.log()
    assert stub.ListModels(pb.ListModelsRequest()).models  # still serving


def test_huge_client_strings_are_refused_briefly_and_barely_logged(agent, stub, pb) -> None:
    before = agent.log_path.stat().st_size
    name = "x" * (1 << 20)
    for call in calls_naming(stub, pb, name):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()[:200]
        assert "… (1048576 characters) is not a Greengrass component name" in error.details()
        assert len(error.details()) < 400
    segment = pb.SharedMemoryHandle(name="/" + "s" * (1 << 20), size=12288)
    request = pb.DetectAnomaliesRequest(
        model_component=SQRT, bitmap=pb.Bitmap(width=64, height=64, shared_memory_handle=segment)
    )
    error = rpc_error(lambda: stub.DetectAnomalies(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 400
    assert agent.log_path.stat().st_size - before < 20_000
