"""Greengrass IPC for the agent, through the awsiotsdk client: lifecycle state, configuration, status reports.

Active only when the nucleus' environment variables are set (the agent runs as a component). The link
never stops inference: the nucleus being absent, dropping the connection or refusing an operation is
logged once per condition and retried with back-off, and reporting resumes when the nucleus is back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, ConfigError

log = logging.getLogger(__name__)
SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
TOKEN_ENV = "SVCUID"
THING_ENV = "AWS_IOT_THING_NAME"
IOT_CORE_TOPIC = "lookoutedge/{thing}/agent/status"  # AWS IoT Core (MQTT), one topic per device
LOCAL_TOPIC = "lookoutedge/agent/status"  # local publish/subscribe on the device
SHADOW_NAME = "lookoutedge-agent"  # named shadow of the core device's thing; reported state only
CALL_TIMEOUT = 10.0
REASONS = ("start", "status-change", "configuration", "heartbeat")  # a report names the first that applies
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def in_greengrass() -> bool:
    return bool(os.environ.get(SOCKET_ENV)) and bool(os.environ.get(TOKEN_ENV))


def status_report(agent: Agent, component: str, version: str, reason: str) -> dict[str, Any]:
    """What every report carries: the agent's own version and each model component's version and status."""
    return {
        "reason": reason,
        "timestamp": round(time.time(), 3),
        "thingName": os.environ.get(THING_ENV, ""),
        "agent": {"componentName": component, "componentVersion": version},
        "models": [
            {
                "componentName": info.name,
                "componentVersion": info.version,
                "modelArn": info.model_arn,
                "status": info.status.name,
                "statusMessage": info.message,
            }
            for info in agent.list_models()
        ],
    }


class _Conditions:
    """Log a failure once until the same operation succeeds again."""

    def __init__(self) -> None:
        self._active: set[tuple[str, str]] = set()

    def failed(self, operation: str, exc: BaseException, any_error: bool = False) -> None:
        """With `any_error`, every exception counts as the same condition (e.g. "cannot reach the nucleus")."""
        key = (operation, "" if any_error else type(exc).__name__)
        if key not in self._active:
            self._active.add(key)
            log.warning("Greengrass %s failed (%s: %s); will retry", operation, type(exc).__name__, exc)

    def succeeded(self, operation: str) -> None:
        if any(op == operation for op, _ in self._active):
            self._active = {k for k in self._active if k[0] != operation}
            log.info("Greengrass %s works again", operation)


class GreengrassLink:
    """Background thread: connect, UpdateState RUNNING, follow configuration, publish reports."""

    def __init__(
        self,
        agent: Agent,
        component: str,
        version: str,
        apply_config: Callable[[AgentConfig], None],
    ) -> None:
        self.agent = agent
        self.component = component
        self.version = version
        self.apply_config = apply_config
        self._wake = threading.Event()
        self._reasons: set[str] = {"start"}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conditions = _Conditions()
        self._shadow_models: set[str] = set()  # the model entries the shadow's reported state holds
        self._thread = threading.Thread(target=self._run, name="greengrass-ipc", daemon=True)
        agent.subscribe(lambda: self._poke("status-change"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(CALL_TIMEOUT + 5)

    def _poke(self, reason: str) -> None:
        with self._lock:
            self._reasons.add(reason)
        self._wake.set()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._session()
                attempt = 0
            except Exception as exc:  # absent, refusing, dropped: one condition until a session works again
                self._conditions.failed("connection", exc, any_error=True)
            if self._stop.wait(BACKOFF[min(attempt, len(BACKOFF) - 1)]):
                return
            attempt += 1

    def _session(self) -> None:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        client = GreengrassCoreIPCClientV2()
        try:
            self._conditions.succeeded("connection")
            client.update_state_async(state="RUNNING").result(CALL_TIMEOUT)
            self._poke("configuration")
            future, _ = client.subscribe_to_configuration_update_async(
                key_path=[], on_stream_event=lambda _event: self._poke("configuration")
            )
            future.result(CALL_TIMEOUT)
            self._poke("start")
            timed_out = False
            while not self._stop.is_set():
                self._wake.clear()
                with self._lock:
                    reasons, self._reasons = self._reasons, set()
                if timed_out:
                    reasons.add("heartbeat")
                if "configuration" in reasons:
                    self._load_configuration(client)
                if reasons:
                    self._report(client, next(r for r in REASONS if r in reasons))
                timed_out = not self._wake.wait(self.agent.config.report_interval_seconds)
        finally:
            client.close()

    def _load_configuration(self, client: Any) -> None:
        value = client.get_configuration_async(key_path=[]).result(CALL_TIMEOUT).value
        try:
            config = AgentConfig.from_mapping(value)
        except ConfigError as exc:
            log.error("keeping the previous configuration: the component configuration is invalid: %s", exc)
            return
        self.apply_config(config)
        log.info("configuration applied from Greengrass")

    def _report(self, client: Any, reason: str) -> None:
        from awsiot.greengrasscoreipc.model import QOS, GreengrassCoreIPCError, JsonMessage, PublishMessage

        report = status_report(self.agent, self.component, self.version, reason)
        document = json.dumps(report).encode()
        thing = report["thingName"]
        models: dict[str, Any] = {
            m["componentName"]: {k: v for k, v in m.items() if k != "componentName"} for m in report["models"]
        }
        # Shadows merge reported state: a model that is gone must be reported as null to disappear.
        models.update(dict.fromkeys(self._shadow_models - set(models)))
        shadow = {"state": {"reported": {"agent": report["agent"], "models": models}}}
        calls: list[tuple[str, Callable[[], Any]]] = [
            (
                "PublishToIoTCore",
                lambda: client.publish_to_iot_core_async(
                    topic_name=IOT_CORE_TOPIC.format(thing=thing or "unknown-thing"),
                    qos=QOS.AT_LEAST_ONCE,
                    payload=document,
                ),
            ),
            (
                "PublishToTopic",
                lambda: client.publish_to_topic_async(
                    topic=LOCAL_TOPIC, publish_message=PublishMessage(json_message=JsonMessage(message=report))
                ),
            ),
        ]
        if thing:
            calls.append(
                (
                    "UpdateThingShadow",
                    lambda: client.update_thing_shadow_async(
                        thing_name=thing, shadow_name=SHADOW_NAME, payload=json.dumps(shadow).encode()
                    ),
                )
            )
        for operation, call in calls:
            try:
                call().result(CALL_TIMEOUT)
            except GreengrassCoreIPCError as exc:  # refused by the nucleus: keep the connection, try next time
                self._conditions.failed(operation, exc)
                continue
            self._conditions.succeeded(operation)
            if operation == "UpdateThingShadow":
                self._shadow_models = {name for name, value in models.items() if value is not None}
