"""`lookout-edge deploy` and `lookout-edge fleet-status` as an operator runs them, with boto3 against the stand-in
Greengrass V2 and IoT data-plane API on loopback (tests/greengrass_cloud_standin.py)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from edge_agent.greengrass_ipc import SHADOW_NAME
from tests.greengrass_cloud_standin import GreengrassCloudStandin

REGION, ACCOUNT = "us-east-1", "000000000000"
GROUP = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/line-3"
BOARDS = "com.example.Boards"


@pytest.fixture
def cloud():
    with GreengrassCloudStandin(REGION, ACCOUNT) as standin:
        yield standin


def _lookout_edge(cloud: GreengrassCloudStandin, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_GREENGRASSV2": cloud.endpoint,
           "AWS_ENDPOINT_URL_IOT_DATA_PLANE": cloud.endpoint}  # fmt: skip
    return subprocess.run(["lookout-edge", *args], env=env, capture_output=True, text=True, timeout=120)


def test_deploy_merges_into_the_groups_deployment_with_the_rollout_asked_for(cloud) -> None:
    kept_configuration = {"merge": '{"Threshold": 0.7}'}
    cloud.deployments.append({
        "deploymentId": "earlier", "targetArn": GROUP,
        "components": {"aws.greengrass.Nucleus": {"componentVersion": "2.12.0"},
                       BOARDS: {"componentVersion": "1.0.0", "configurationUpdate": kept_configuration}},
    })  # fmt: skip
    components = ["--component", f"{BOARDS}=2.0.0", "--component", "lookoutedge.EdgeAgent=1.2.0"]
    policy = ["--failure-handling", "DO_NOTHING", "--devices-per-minute", "5", "--device-timeout", "30"]
    done = _lookout_edge(cloud, "deploy", *components, "--target-arn", GROUP, *policy)
    assert done.returncode == 0, done.stderr
    assert "deployment deployment-2 created" in done.stdout
    created = cloud.deployments[-1]
    assert created["components"] == {
        "aws.greengrass.Nucleus": {"componentVersion": "2.12.0"},
        BOARDS: {"componentVersion": "2.0.0", "configurationUpdate": kept_configuration},
        "lookoutedge.EdgeAgent": {"componentVersion": "1.2.0"},
    }
    assert created["deploymentPolicies"]["failureHandlingPolicy"] == "DO_NOTHING"
    assert created["iotJobConfiguration"] == {
        "jobExecutionsRolloutConfig": {"maximumPerMinute": 5},
        "timeoutConfig": {"inProgressTimeoutInMinutes": 30},
    }


def _shadow(agent: str, models: dict[str, tuple[str, str]], reported_at: float) -> dict:
    stamp = {"componentVersion": {"timestamp": int(reported_at)}}
    return {
        "state": {"reported": {"agent": {"componentName": "lookoutedge.EdgeAgent", "componentVersion": agent},
                               "models": {n: {"componentVersion": v, "status": s} for n, (v, s) in models.items()}}},
        "metadata": {"reported": {"agent": stamp, "models": {n: stamp for n in models}}},
        "version": 7,
        "timestamp": int(time.time()),
    }  # fmt: skip


def test_fleet_status_reads_every_devices_agent_report(cloud) -> None:
    cloud.groups[GROUP] = ["press-a", "press-b", "press-c"]  # three devices: two pages of core devices
    now = time.time()
    cloud.shadows[("press-a", SHADOW_NAME)] = _shadow("1.2.0", {BOARDS: ("2.0.0", "RUNNING")}, now - 20)
    cloud.shadows[("press-b", SHADOW_NAME)] = _shadow("1.1.0", {BOARDS: ("1.0.0", "FAILED")}, now - 3600)
    done = _lookout_edge(cloud, "fleet-status", "--target-arn", GROUP)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {"press-a", "press-b", "press-c"}
    assert rows["press-a"].split()[2:6] == ["1.2.0", BOARDS, "2.0.0", "RUNNING"] and "STALE" not in rows["press-a"]
    assert rows["press-b"].split()[2:6] == ["1.1.0", BOARDS, "1.0.0", "FAILED"] and rows["press-b"].endswith("STALE")
    assert "never" in rows["press-c"] and rows["press-c"].endswith("STALE")  # its agent never reported


def test_targets_that_are_not_thing_or_group_arns_are_refused(cloud) -> None:
    done = _lookout_edge(cloud, "fleet-status", "--target-arn", "line-3")
    assert done.returncode == 252 and "is not a thing or thing-group ARN" in done.stderr
