"""Greengrass IPC: the real awsiotsdk client against the stand-in nucleus, and an agent process that reports
its and its models' versions and status through it, and keeps serving through nucleus faults."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.agent_harness import AgentProcess, unpack, wait_for_status
from tests.conftest import BOARDS, SQRT
from tests.standin.nucleus import StandinNucleus, error

TOKEN = "ABCDEFGHIJKLMNOP"
THING = "factory-line-1"
AGENT = "lookoutedge.EdgeAgent"
IOT_TOPIC = f"lookoutedge/{THING}/agent/status"


@pytest.fixture
def socket_dir():
    folder = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def nucleus(socket_dir):
    standin = StandinNucleus(socket_dir / "ipc.socket", TOKEN, AGENT, {"ReportIntervalSeconds": 2})
    yield standin
    standin.stop()


def greengrass_env(nucleus: StandinNucleus) -> dict[str, str]:
    return {
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(nucleus.socket_path),
        "SVCUID": TOKEN,
        "AWS_IOT_THING_NAME": THING,
    }


def test_real_client_completes_every_operation_the_agent_uses(nucleus, monkeypatch) -> None:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import QOS, JsonMessage, PublishMessage, UnauthorizedError

    nucleus.configuration = {"Socket": "unix:///tmp/a.sock", "Models": {BOARDS: {"Threshold": 0.5}}}
    nucleus.start()
    for name, value in greengrass_env(nucleus).items():
        monkeypatch.setenv(name, value)
    client = GreengrassCoreIPCClientV2()
    try:
        client.update_state(state="RUNNING")
        assert nucleus.state == "RUNNING"
        assert client.get_configuration(key_path=[]).value == nucleus.configuration
        assert client.get_configuration(key_path=["Models", BOARDS, "Threshold"]).value == {"Threshold": 0.5}
        events = []
        client.subscribe_to_configuration_update(key_path=[], on_stream_event=events.append)
        nucleus.update_configuration(["Models", BOARDS, "Threshold"], 0.7)
        deadline = time.time() + 5
        while not events and time.time() < deadline:
            time.sleep(0.05)
        assert events[0].configuration_update_event.key_path == ["Models", BOARDS, "Threshold"]
        client.publish_to_iot_core(topic_name="a/b", qos=QOS.AT_LEAST_ONCE, payload=b'{"x": 1}')
        client.publish_to_topic(topic="a/b", publish_message=PublishMessage(json_message=JsonMessage(message={"x": 1})))
        reply = client.update_thing_shadow(
            thing_name=THING, shadow_name="s", payload=json.dumps({"state": {"reported": {"x": 1}}}).encode()
        )
        assert json.loads(reply.payload)["state"]["reported"] == {"x": 1}
        nucleus.errors["PublishToIoTCore"] = error("UnauthorizedError", "Not Authorized")
        with pytest.raises(UnauthorizedError):
            client.publish_to_iot_core(topic_name="a/b", qos=QOS.AT_LEAST_ONCE, payload=b"{}")
        nucleus.delays["UpdateState"] = 0.5
        started = time.time()
        client.update_state(state="RUNNING")
        assert time.time() - started >= 0.5
    finally:
        client.close()
    nucleus.refuse_connect = True
    with pytest.raises(Exception) as refused:  # AccessDeniedError, or AwsCrtError when the socket closes first
        GreengrassCoreIPCClientV2()
    assert type(refused.value).__name__ in ("AccessDeniedError", "AwsCrtError")
    assert nucleus.calls[-1].request == {"authToken": TOKEN, "accepted": False}
    operations = [call.operation for call in nucleus.calls]
    assert operations[0] == "CONNECT" and nucleus.calls[0].request == {"authToken": TOKEN, "accepted": True}
    for operation in (
        "UpdateState",
        "GetConfiguration",
        "SubscribeToConfigurationUpdate",
        "PublishToIoTCore",
        "PublishToTopic",
        "UpdateThingShadow",
    ):
        assert operation in operations


def iot_reports(nucleus: StandinNucleus) -> list[dict]:
    reports = []
    for call in nucleus.calls_to("PublishToIoTCore"):
        assert call.request["topicName"] == IOT_TOPIC and call.request["qos"] == "1"
        reports.append(json.loads(base64.b64decode(call.request["payload"])))
    return reports


def wait_for_report(nucleus: StandinNucleus, check, timeout: float = 60.0) -> dict:
    """The first IoT Core report for which `check(report)` holds."""
    found: list[dict] = []

    def seen(_calls) -> bool:
        found[:] = [r for r in iot_reports(nucleus) if check(r)]
        return bool(found)

    nucleus.wait_for(seen, timeout)
    return found[0]


def model_entry(report: dict, name: str) -> dict | None:
    return next((m for m in report["models"] if m["componentName"] == name), None)


def test_agent_reports_versions_and_status_and_follows_configuration(nucleus, packaged, client_stubs, tmp_path):
    pb, pb_grpc = client_stubs
    nucleus.start()
    versions = {v: unpack(packaged[f"{BOARDS}-{v}"], tmp_path / v / "model") for v in ("1.0.0", "2.0.0")}
    agent = AgentProcess(tmp_path / "agent", env=greengrass_env(nucleus))
    arn = "arn:aws:lookoutvision:us-east-1:000000000000:model/boards/1"

    def register(version: str) -> None:
        from edge_agent.components.deployments import Registration
        from edge_agent.components.registrations import write_registration

        write_registration(agent.registry_dir, Registration(BOARDS, version, arn, versions[version]))

    with agent:
        nucleus.wait_for(lambda calls: any(c.operation == "UpdateState" for c in calls))
        assert nucleus.state == "RUNNING"
        register("1.0.0")
        stopped = wait_for_report(nucleus, lambda r: (model_entry(r, BOARDS) or {}).get("status") == "STOPPED")
        assert stopped["agent"] == {"componentName": AGENT, "componentVersion": "0.1.0"}
        assert stopped["thingName"] == THING
        assert model_entry(stopped, BOARDS) == {
            "componentName": BOARDS,
            "componentVersion": "1.0.0",
            "modelArn": arn,
            "status": "STOPPED",
            "statusMessage": "version 1.0.0 is ready; call StartModel",
        }
        with agent.channel() as channel:
            stub = pb_grpc.EdgeAgentStub(channel)
            stub.StartModel(pb.StartModelRequest(model_component=BOARDS))
            wait_for_status(stub, pb, BOARDS, pb.RUNNING)
            running = wait_for_report(nucleus, lambda r: (model_entry(r, BOARDS) or {}).get("status") == "RUNNING")
            assert running["reason"] == "status-change"
            assert model_entry(running, BOARDS)["componentVersion"] == "1.0.0"

            register("2.0.0")
            swapped = wait_for_report(
                nucleus,
                lambda r: (
                    (model_entry(r, BOARDS) or {}).get("componentVersion") == "2.0.0"
                    and model_entry(r, BOARDS)["status"] == "RUNNING"
                ),
            )
            assert "running version 2.0.0" in model_entry(swapped, BOARDS)["statusMessage"]

            nucleus.update_configuration(["Models"], {BOARDS: {"Threshold": 0.25}})
            agent.wait_for_log("configuration applied from Greengrass", 2)
            rgb = np.full((224, 224, 3), 128, np.uint8)
            request = pb.DetectAnomaliesRequest(
                model_component=BOARDS, bitmap=pb.Bitmap(width=224, height=224, byte_data=rgb.tobytes())
            )
            assert stub.DetectAnomalies(request).detect_anomaly_result.anomaly_threshold == np.float32(0.25)

            stub.StopModel(pb.StopModelRequest(model_component=BOARDS))
            wait_for_report(
                nucleus,
                lambda r: (
                    (model_entry(r, BOARDS) or {}).get("status") == "STOPPED"
                    and model_entry(r, BOARDS)["componentVersion"] == "2.0.0"
                ),
            )
        wait_for_report(nucleus, lambda r: r["reason"] == "heartbeat")
        window = time.time()
        time.sleep(4.5)
        beats = [
            r["timestamp"] for r in iot_reports(nucleus) if r["reason"] == "heartbeat" and r["timestamp"] >= window
        ]
        assert 1 <= len(beats) <= 3  # one every 2 s (ReportIntervalSeconds), no more

        local = [c.request for c in nucleus.calls_to("PublishToTopic")]
        assert local and local[-1]["topic"] == "lookoutedge/agent/status"
        assert local[-1]["publishMessage"]["jsonMessage"]["message"]["agent"]["componentName"] == AGENT
        shadow = nucleus.shadows[(THING, "lookoutedge-agent")]["state"]["reported"]
        assert shadow["agent"]["componentVersion"] == "0.1.0"
        assert shadow["models"][BOARDS]["componentVersion"] == "2.0.0"
        assert shadow["models"][BOARDS]["modelArn"] == arn

        # A removed component disappears from the shadow (reported as null: shadows merge).
        from edge_agent.components.registrations import remove_registration

        remove_registration(agent.registry_dir, BOARDS)
        wait_for_report(nucleus, lambda r: not r["models"])
        nucleus.wait_for(
            lambda _: BOARDS not in nucleus.shadows[(THING, "lookoutedge-agent")]["state"]["reported"]["models"]
        )

        # A new Socket in the component configuration moves the server without a restart.
        moved = Path(tempfile.mkdtemp(prefix="lea-", dir="/tmp")) / "moved.sock"
        nucleus.update_configuration(["Socket"], f"unix://{moved}")
        deadline = time.time() + 30
        while not (moved.exists() and not agent.socket_path.exists()) and time.time() < deadline:
            time.sleep(0.1)
        assert moved.exists() and not agent.socket_path.exists()
        agent.socket_path = moved
    assert agent.process.returncode == 0
    shutil.rmtree(moved.parent, ignore_errors=True)


@pytest.fixture
def sqrt_models(packaged, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(packaged[f"{SQRT}-1.0.0"], models / "sqrt.zip")
    return models


def detect_works(agent: AgentProcess, pb, pb_grpc) -> None:
    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        if stub.DescribeModel(pb.DescribeModelRequest(model_component=SQRT)).model_description.status != pb.RUNNING:
            stub.StartModel(pb.StartModelRequest(model_component=SQRT))
            wait_for_status(stub, pb, SQRT, pb.RUNNING)
        rgb = np.full((64, 64, 3), 128, np.uint8)
        request = pb.DetectAnomaliesRequest(
            model_component=SQRT, bitmap=pb.Bitmap(width=64, height=64, byte_data=rgb.tobytes())
        )
        assert 0 < stub.DetectAnomalies(request, timeout=30).detect_anomaly_result.anomaly_score <= 1


def test_nucleus_absent_at_start_then_arriving(nucleus, sqrt_models, client_stubs, tmp_path) -> None:
    pb, pb_grpc = client_stubs
    with AgentProcess(tmp_path / "agent", models_dir=sqrt_models, env=greengrass_env(nucleus)) as agent:
        detect_works(agent, pb, pb_grpc)
        agent.wait_for_log("Greengrass connection failed")
        nucleus.start()
        report = wait_for_report(nucleus, lambda r: model_entry(r, SQRT) is not None)
        assert model_entry(report, SQRT)["status"] == "RUNNING"
        assert nucleus.state == "RUNNING"
        detect_works(agent, pb, pb_grpc)
    assert agent.log().count("Greengrass connection failed") == 1  # logged once, however many retries


def test_dropped_connection_and_refused_publish_do_not_stop_inference(nucleus, sqrt_models, client_stubs, tmp_path):
    pb, pb_grpc = client_stubs
    nucleus.start()
    with AgentProcess(tmp_path / "agent", models_dir=sqrt_models, env=greengrass_env(nucleus)) as agent:
        wait_for_report(nucleus, lambda r: model_entry(r, SQRT) is not None)
        nucleus.drop_connections()
        detect_works(agent, pb, pb_grpc)
        nucleus.wait_for(lambda calls: sum(c.operation == "CONNECT" for c in calls) >= 2)
        wait_for_report(nucleus, lambda r: (model_entry(r, SQRT) or {}).get("status") == "RUNNING")

        # A report goes to IoT Core first and to the shadow after it: wait for the shadow too.
        nucleus.wait_for(lambda _: (THING, "lookoutedge-agent") in nucleus.shadows)
        nucleus.errors["PublishToIoTCore"] = error("UnauthorizedError", "Not Authorized")
        refused_from = len(nucleus.calls_to("PublishToIoTCore"))
        shadows_before = nucleus.shadows[(THING, "lookoutedge-agent")]["version"]
        nucleus.wait_for(lambda _: len(nucleus.calls_to("PublishToIoTCore")) >= refused_from + 2)
        detect_works(agent, pb, pb_grpc)
        assert nucleus.shadows[(THING, "lookoutedge-agent")]["version"] > shadows_before  # other channels go on
        assert agent.log().count("Greengrass PublishToIoTCore failed (UnauthorizedError") == 1
        del nucleus.errors["PublishToIoTCore"]
        agent.wait_for_log("Greengrass PublishToIoTCore works again")
    assert agent.process.returncode == 0
