"""Many clients at once, and a model version swap under load, with components registered through the
`lookout-edge-agent register/deregister` commands the model component's recipe runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest

from compiler.models.sample_images import held_out_set
from tests.agent_harness import REPO, AgentProcess, unpack, wait_for_status
from tests.conftest import BOARDS

MODEL_ARN = "arn:aws:lookoutvision:us-east-1:000000000000:model/boards/1"


def agent_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def components(packaged, tmp_path_factory):
    """Both versions unpacked where Greengrass would put them ({artifacts:decompressedPath}/model)."""
    root = tmp_path_factory.mktemp("components")
    return {
        version: unpack(packaged[f"{BOARDS}-{version}"], root / version / "model") for version in ("1.0.0", "2.0.0")
    }


@pytest.fixture(scope="module")
def agent(tmp_path_factory, components):
    with AgentProcess(tmp_path_factory.mktemp("agent-load"), config={"Concurrency": 2}) as process:
        yield process


def _registry_command(agent: AgentProcess, command: str, version: str, *more: str) -> str:
    """`lookout-edge-agent <command>` for the BOARDS component in the agent's registry folder; its stdout."""
    done = agent_cli(
        command, "--registry-dir", str(agent.registry_dir), "--component-name", BOARDS, "--component-version", version,
        *more,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def register(agent: AgentProcess, version: str, path) -> None:
    stdout = _registry_command(agent, "register", version, "--model-arn", MODEL_ARN, "--path", str(path))
    assert f"registered {BOARDS} {version}" in stdout


def deregister(agent: AgentProcess, version: str) -> str:
    return _registry_command(agent, "deregister", version)


def request_for(pb, rgb: np.ndarray):
    height, width = rgb.shape[:2]
    return pb.DetectAnomaliesRequest(
        model_component=BOARDS, bitmap=pb.Bitmap(width=width, height=height, byte_data=rgb.tobytes())
    )


def wait_until_listed(stub, pb, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(m.model_component == BOARDS for m in stub.ListModels(pb.ListModelsRequest()).models):
            return
        time.sleep(0.1)
    raise AssertionError(f"{BOARDS} was not listed within {timeout} s of registering")


def test_sixteen_concurrent_clients_get_the_single_threaded_results(agent, client_stubs, components, boards_model):
    pb, pb_grpc = client_stubs
    register(agent, "1.0.0", components["1.0.0"])
    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        wait_until_listed(stub, pb)
        assert stub.StartModel(pb.StartModelRequest(model_component=BOARDS)).status == pb.STARTING
        running = wait_for_status(stub, pb, BOARDS, pb.RUNNING)
        assert "with 2 worker(s)" in running.status_message

    samples = held_out_set(2, seed=9)
    images = [
        cv2.resize(s.rgb, size)
        for s, size in zip(samples, [(224, 224), (320, 240), (640, 480), (100, 90)], strict=True)
    ]
    expected = [boards_model.detect(image, with_mask=True) for image in images]

    def client(index: int):
        with agent.channel() as channel:  # every client has its own connection
            reply = pb_grpc.EdgeAgentStub(channel).DetectAnomalies(request_for(pb, images[index % 4]), timeout=300)
        return index, reply.detect_anomaly_result

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(16)))
    for index, result in results:
        direct = expected[index % 4]
        assert result.anomaly_score == np.float32(direct.anomaly_score)
        assert result.is_anomalous == direct.is_anomalous
        assert result.anomaly_mask.byte_data == direct.mask.tobytes()


def test_version_swap_under_load_drops_no_request(agent, client_stubs, components):
    pb, pb_grpc = client_stubs
    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        if stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description.status != pb.RUNNING:
            stub.StartModel(pb.StartModelRequest(model_component=BOARDS))
            wait_for_status(stub, pb, BOARDS, pb.RUNNING)

    image = held_out_set(1, seed=5)[0].rgb
    stop = threading.Event()
    replies: list[tuple[float, float, float]] = []  # (sent, answered, threshold), in the order answered
    errors: list[str] = []

    def client() -> None:
        with agent.channel() as channel:
            stub = pb_grpc.EdgeAgentStub(channel)
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    reply = stub.DetectAnomalies(request_for(pb, image), timeout=300)
                except grpc.RpcError as error:
                    errors.append(f"{error.code()}: {error.details()}")
                    continue
                replies.append((sent, time.monotonic(), reply.detect_anomaly_result.anomaly_threshold))

    def thresholds() -> list[float]:
        return [threshold for _, _, threshold in replies]

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(2)
        register(agent, "2.0.0", components["2.0.0"])  # version 2 was packaged with threshold 0.6
        deadline = time.time() + 180
        while np.float32(0.6) not in thresholds() and time.time() < deadline and not errors:
            time.sleep(0.2)
        settled = len(replies)
        while len(replies) < settled + 8 and time.time() < deadline and not errors:
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert errors == []
    assert thresholds()[0] == np.float32(0.5) and thresholds()[-1] == np.float32(0.6)
    # Requests queued on version 1 before the swap may still finish after version 2 answered (they drain
    # on the old pool); a request *sent* after version 2 first answered must never reach version 1.
    first_new_answer = min(answered for _, answered, threshold in replies if threshold == np.float32(0.6))
    sent_later = [threshold for sent, _, threshold in replies if sent > first_new_answer]
    assert len(sent_later) >= 4, "too few requests after the swap to tell"
    assert all(t == np.float32(0.6) for t in sent_later), "requests went back to the old version"

    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        description = stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description
        assert description.status == pb.RUNNING and "running version 2.0.0" in description.status_message
        # The old version's Shutdown deregisters only its own registration, so version 2 stays.
        assert "was not registered" in deregister(agent, "1.0.0")
        time.sleep(1.5)
        assert (
            stub.DescribeModel(pb.DescribeModelRequest(model_component=BOARDS)).model_description.status == pb.RUNNING
        )
        assert "deregistered" in deregister(agent, "2.0.0")
        deadline = time.time() + 30
        while any(m.model_component == BOARDS for m in stub.ListModels(pb.ListModelsRequest()).models):
            assert time.time() < deadline, "deregistered component still listed"
            time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as gone:
            stub.DetectAnomalies(request_for(pb, image))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
