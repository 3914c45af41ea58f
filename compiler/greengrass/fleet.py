"""Rolling model components out to devices with Greengrass V2 deployments, and reading each device's agent report
back (the named shadow the agent writes, edge_agent/greengrass_ipc.py). boto3 with the standard AWS configuration
(AWS_ENDPOINT_URL_GREENGRASSV2 / AWS_ENDPOINT_URL_IOT_DATA_PLANE for other endpoints)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from edge_agent.greengrass_ipc import SHADOW_NAME

FAILURE_HANDLING = ("ROLLBACK", "DO_NOTHING")


@dataclass(frozen=True)
class RolloutPolicy:
    """What Greengrass deployments offer: failure handling, how long components get to stop for an update, how
    fast the IoT job reaches devices, and when a device's deployment counts as timed out."""

    failure_handling: str = "ROLLBACK"
    update_timeout_seconds: int = 60
    devices_per_minute: int | None = None
    device_timeout_minutes: int | None = None

    def deployment_policies(self) -> dict[str, Any]:
        return {
            "failureHandlingPolicy": self.failure_handling,
            "componentUpdatePolicy": {"timeoutInSeconds": self.update_timeout_seconds, "action": "NOTIFY_COMPONENTS"},
        }

    def iot_job_configuration(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.devices_per_minute:
            config["jobExecutionsRolloutConfig"] = {"maximumPerMinute": self.devices_per_minute}
        if self.device_timeout_minutes:
            config["timeoutConfig"] = {"inProgressTimeoutInMinutes": self.device_timeout_minutes}
        return config


def deploy(client: Any, target_arn: str, components: dict[str, str], policy: RolloutPolicy) -> dict[str, Any]:
    """A deployment of `components` (name → version) to a thing or thing group, merged into the target's latest
    deployment (its other components, and their configuration, stay); returns CreateDeployment's answer."""
    merged: dict[str, Any] = {}
    latest = client.list_deployments(targetArn=target_arn, historyFilter="LATEST_ONLY").get("deployments", [])
    if latest:
        merged = dict(client.get_deployment(deploymentId=latest[0]["deploymentId"]).get("components") or {})
    for name, version in components.items():
        merged[name] = {**merged.get(name, {}), "componentVersion": version}
    request: dict[str, Any] = {
        "targetArn": target_arn,
        "deploymentName": "lookout-edge: " + ", ".join(f"{n}={v}" for n, v in sorted(components.items())),
        "components": merged,
        "deploymentPolicies": policy.deployment_policies(),
    }
    if policy.iot_job_configuration():
        request["iotJobConfiguration"] = policy.iot_job_configuration()
    return client.create_deployment(**request)


@dataclass
class DeviceReport:
    """One device's last agent report: agent version, each model's version and status, when it was written."""

    device: str
    core_status: str
    agent_version: str = "-"
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # component → (version, status)
    reported_at: float | None = None

    def stale(self, now: float, after_seconds: float) -> bool:
        return self.reported_at is None or now - self.reported_at > after_seconds


def _devices(client: Any, target_arn: str) -> list[tuple[str, str]]:
    """(thing name, core device status) of every core device the target names: a thing or a thing group."""
    if ":thing/" in target_arn:
        return [(target_arn.rsplit("/", 1)[1], "-")]
    devices, token = [], None
    while True:
        page = client.list_core_devices(thingGroupArn=target_arn, **({"nextToken": token} if token else {}))
        devices += [(d["coreDeviceThingName"], d.get("status", "-")) for d in page.get("coreDevices", [])]
        token = page.get("nextToken")
        if not token:
            return devices


def _latest_timestamp(metadata: Any) -> float | None:
    """The newest `timestamp` anywhere in a shadow's metadata tree (when the agent last wrote its report)."""
    if isinstance(metadata, dict):
        stamps = [metadata["timestamp"]] if isinstance(metadata.get("timestamp"), int | float) else []
        stamps += [s for value in metadata.values() if (s := _latest_timestamp(value)) is not None]
        return max(stamps) if stamps else None
    return None


def fleet_status(greengrass: Any, iot_data: Any, target_arn: str) -> list[DeviceReport]:
    """Every device of the target with its agent's last report (a device whose agent never reported has none)."""
    reports = []
    for thing, status in _devices(greengrass, target_arn):
        report = DeviceReport(thing, status)
        try:
            payload = iot_data.get_thing_shadow(thingName=thing, shadowName=SHADOW_NAME)["payload"].read()
        except iot_data.exceptions.ResourceNotFoundException:
            reports.append(report)
            continue
        shadow = json.loads(payload)
        reported = shadow.get("state", {}).get("reported", {})
        report.agent_version = (reported.get("agent") or {}).get("componentVersion", "-")
        report.models = {
            name: (model.get("componentVersion", "-"), model.get("status", "-"))
            for name, model in (reported.get("models") or {}).items()
            if model
        }
        report.reported_at = _latest_timestamp(shadow.get("metadata", {}).get("reported"))
        reports.append(report)
    return reports


def status_table(reports: list[DeviceReport], stale_after_seconds: float, now: float | None = None) -> str:
    """The table `lookout-edge fleet-status` prints: a row per device and model component."""
    now = time.time() if now is None else now
    rows = [("DEVICE", "CORE", "AGENT", "MODEL COMPONENT", "VERSION", "STATUS", "LAST REPORT", "")]
    for report in reports:
        when = "never" if report.reported_at is None else f"{now - report.reported_at:.0f} s ago"
        flag = "STALE" if report.stale(now, stale_after_seconds) else ""
        models = sorted(report.models.items()) or [("-", ("-", "-"))]
        for name, (version, status) in models:
            rows.append((report.device, report.core_status, report.agent_version, name, version, status, when, flag))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
