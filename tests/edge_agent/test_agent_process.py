"""The agent as a process: socket file permissions and hygiene, health service, configuration errors,
and a clean SIGTERM shutdown that lets calls in flight finish."""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import threading
import time
from multiprocessing import shared_memory

import cv2
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from compiler.models.sample_images import held_out_set
from tests.agent_harness import AgentProcess, wait_for_status
from tests.conftest import BOARDS


def test_socket_is_owner_and_group_only_and_health_is_served(tmp_path) -> None:
    with AgentProcess(tmp_path) as agent:
        mode = stat.S_IMODE(agent.socket_path.stat().st_mode)
        assert mode == 0o660
        with grpc.insecure_channel(agent.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "AWS.LookoutVision.EdgeAgent"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert agent.process.returncode == 0
    assert not agent.socket_path.exists()


def test_stale_socket_is_replaced_and_a_live_one_is_refused(tmp_path) -> None:
    first = AgentProcess(tmp_path / "first")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(first.socket_path))  # bound, never listening: what a killed agent leaves behind
    stale.close()
    with first:
        assert "removed stale socket file" in first.log()
        second = AgentProcess(tmp_path / "second")
        command = second.command()
        command[command.index("--socket") + 1] = first.address
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=second.work)
        assert refused.returncode == 1
        assert "another process is already serving on" in refused.stderr
        assert first.healthy()
        shutil.rmtree(second.socket_dir)


def test_a_file_in_the_way_is_never_deleted(tmp_path) -> None:
    agent = AgentProcess(tmp_path)
    agent.socket_path.write_text("not a socket")
    refused = subprocess.run(agent.command(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "exists and is not a socket" in refused.stderr
    assert agent.socket_path.read_text() == "not a socket"
    shutil.rmtree(agent.socket_dir)


def test_configuration_errors_name_the_key(tmp_path) -> None:
    agent = AgentProcess(tmp_path, config={"Concurrency": 0, "Models": {BOARDS: {"Treshold": 0.4}}})
    refused = subprocess.run(agent.command(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "Concurrency must be a whole number from 1 to 64, got 0" in refused.stderr
    shutil.rmtree(agent.socket_dir)


def test_sigterm_lets_the_call_in_flight_finish(tmp_path, packaged, client_stubs) -> None:
    pb, pb_grpc = client_stubs
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(packaged[f"{BOARDS}-1.0.0"], models / "boards.zip")
    agent = AgentProcess(tmp_path / "agent", models_dir=models).start()
    try:
        channel = agent.channel()
        stub = pb_grpc.EdgeAgentStub(channel)
        stub.StartModel(pb.StartModelRequest(model_component=BOARDS))
        wait_for_status(stub, pb, BOARDS, pb.RUNNING)
        rgb = cv2.resize(held_out_set(1, seed=5)[1].rgb, (2048, 2048), interpolation=cv2.INTER_NEAREST)
        # The image goes through shared memory, so the six small requests reach the agent at once.
        segment = shared_memory.SharedMemory(create=True, size=rgb.nbytes)
        segment.buf[: rgb.nbytes] = rgb.tobytes()
        handle = pb.SharedMemoryHandle(name=segment.name, size=rgb.nbytes, offset=0)
        request = pb.DetectAnomaliesRequest(
            model_component=BOARDS, bitmap=pb.Bitmap(width=2048, height=2048, shared_memory_handle=handle)
        )
        outcomes: list[object] = []

        def call() -> None:
            try:
                outcomes.append(stub.DetectAnomalies(request, timeout=120).detect_anomaly_result)
            except grpc.RpcError as error:
                outcomes.append(f"{error.code()}: {error.details()}")

        # Six 2048² requests queue up behind one worker, so SIGTERM arrives while one is inside the model and
        # others wait for it.
        callers = [threading.Thread(target=call) for _ in range(6)]
        for caller in callers:
            caller.start()
        time.sleep(0.1)  # all six are in the agent within milliseconds; their work takes several tenths
        assert agent.stop() == 0
        for caller in callers:
            caller.join()
        channel.close()
        segment.close()
        segment.unlink()
        assert len(outcomes) == 6 and all(not isinstance(o, str) for o in outcomes), outcomes
        assert all(o.is_anomalous for o in outcomes)
        assert not agent.socket_path.exists()
        assert "shutting down: finishing calls in flight" in agent.log()
    finally:
        agent.__exit__(None, None, None)


def test_a_bad_bundle_in_the_models_folder_is_logged_once_not_on_every_poll(tmp_path, packaged, client_stubs) -> None:
    """Polled twice a second, a broken zip is reported when it appears and again only when its problem changes,
    and listed as FAILED with the reason; a good bundle added afterwards is still served."""
    pb, pb_grpc = client_stubs
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.zip").write_bytes(b"not a zip at all")
    with AgentProcess(tmp_path / "agent", models_dir=models) as agent:
        agent.wait_for_log("ignoring")
        time.sleep(2.5)  # five more polls
        assert agent.log().count("ignoring") == 1, agent.log()
        (models / "broken.zip").write_bytes(b"still not a zip, but longer than before")
        time.sleep(1.0)
        shutil.copy(packaged[f"{BOARDS}-1.0.0"], models / "boards.zip")
        with agent.channel() as channel:
            stub = pb_grpc.EdgeAgentStub(channel)
            deadline = time.time() + 30
            while BOARDS not in [m.model_component for m in stub.ListModels(pb.ListModelsRequest()).models]:
                assert time.time() < deadline, agent.log()
                time.sleep(0.2)
            listed = {m.model_component: m for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert listed["broken"].status == pb.FAILED
        assert "models folder entry broken.zip cannot be used" in listed["broken"].status_message
        assert "not a complete zip archive" in listed["broken"].status_message
        assert agent.log().count("ignoring") == 1, agent.log()
