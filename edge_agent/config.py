"""Agent configuration: the keys of the agent component's configuration, validated once here.

The same mapping comes from a YAML/JSON file (`--config`) in local mode, and from Greengrass component
configuration on a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_agent.defaults import DEFAULT_SOCKET

PRECISIONS = ("fp32", "fp16")  # of TensorRT engines

# Greengrass keeps the component's IPC authorization policies in its configuration too; they are not ours.
IGNORED_KEYS = frozenset({"accessControl"})
MAX_CONCURRENCY = 64
MAX_QUEUED = 10_000


class ConfigError(ValueError):
    """A configuration value that breaks a rule; the message names the key."""


@dataclass(frozen=True)
class AgentConfig:
    """Socket: where to serve. Concurrency: worker threads (VMs) per running model. MaxQueuedRequests: requests
    that may wait per model before RESOURCE_EXHAUSTED. MemoryBudgetMiB: what all running models may take
    (0 = whatever the device has available). ReportIntervalSeconds: heartbeat of the Greengrass status reports.
    Models.<component>.Threshold: anomaly threshold override. TensorRTPython: the Python with TensorRT's bindings
    (default: look for one). TensorRTPrecision: fp32 or fp16 for TensorRT engines (default: the bundle's)."""

    socket: str = DEFAULT_SOCKET
    concurrency: int = 1
    max_queued_requests: int = 32
    memory_budget_mib: int = 0
    report_interval_seconds: int = 300
    thresholds: dict[str, float] = field(default_factory=dict)
    tensorrt_python: str | None = None
    tensorrt_precision: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> AgentConfig:
        data = dict(data or {})
        known = {
            "Socket",
            "Concurrency",
            "MaxQueuedRequests",
            "MemoryBudgetMiB",
            "ReportIntervalSeconds",
            "Models",
            "TensorRTPython",
            "TensorRTPrecision",
        }
        unknown = sorted(set(data) - known - IGNORED_KEYS)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        socket = data.get("Socket", cls.socket)
        if not isinstance(socket, str):
            raise ConfigError(f"Socket must be a string like {DEFAULT_SOCKET}, got {socket!r}")
        socket_path(socket)
        return cls(
            socket=socket,
            concurrency=_integer(data, "Concurrency", cls.concurrency, 1, MAX_CONCURRENCY),
            max_queued_requests=_integer(data, "MaxQueuedRequests", cls.max_queued_requests, 1, MAX_QUEUED),
            memory_budget_mib=_integer(data, "MemoryBudgetMiB", cls.memory_budget_mib, 0, 1 << 30),
            report_interval_seconds=_integer(data, "ReportIntervalSeconds", cls.report_interval_seconds, 1, 86_400),
            thresholds=_thresholds({} if data.get("Models") is None else data["Models"]),
            tensorrt_python=_tensorrt_python(data.get("TensorRTPython")),
            tensorrt_precision=_choice(data, "TensorRTPrecision", PRECISIONS),
        )

    def default_mapping(self) -> dict[str, Any]:
        """The keys with their values as a configuration file or a recipe's DefaultConfiguration writes them."""
        return {
            "Socket": self.socket,
            "Concurrency": self.concurrency,
            "MaxQueuedRequests": self.max_queued_requests,
            "MemoryBudgetMiB": self.memory_budget_mib,
            "ReportIntervalSeconds": self.report_interval_seconds,
            "Models": {name: {"Threshold": value} for name, value in self.thresholds.items()},
        }


def _tensorrt_python(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(
            f"TensorRTPython must be the absolute path of a Python, e.g. /usr/bin/python3.8, got {value!r}"
        )
    return value


def _choice(data: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is not None and value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _integer(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON numbers from Greengrass arrive as floats
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _thresholds(models: Any) -> dict[str, float]:
    if not isinstance(models, Mapping):
        raise ConfigError(f"Models must map component names to settings, got {models!r}")
    thresholds = {}
    for name, settings in models.items():
        if not isinstance(settings, Mapping):
            raise ConfigError(f"Models.{name} must be a mapping like {{Threshold: 0.6}}, got {settings!r}")
        unknown = sorted(set(settings) - {"Threshold"})
        if unknown:
            raise ConfigError(f"Models.{name}: unknown key(s) {', '.join(unknown)}; known keys: Threshold")
        if "Threshold" in settings:
            value = settings["Threshold"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"Models.{name}.Threshold must be a number from 0 to 1, got {value!r}")
            thresholds[str(name)] = float(value)
    return thresholds


def socket_path(address: str) -> Path:
    """The file of a `unix:` address: unix:///tmp/a.sock and unix:/tmp/a.sock both mean /tmp/a.sock."""
    if not address.startswith("unix:"):
        raise ConfigError(f"Socket {address!r} must be a Unix socket address such as {DEFAULT_SOCKET}")
    path = address[len("unix:") :]
    if path.startswith("//"):
        path = path[2:]
    if not path.startswith("/"):
        raise ConfigError(f"Socket {address!r} must name an absolute path, such as {DEFAULT_SOCKET}")
    if len(path.encode()) > 107:
        raise ConfigError(f"Socket path {path!r} is longer than the 107 bytes a Unix socket path may have")
    return Path(path)


def load_config_file(path: Path) -> AgentConfig:
    """Read a YAML or JSON configuration file; ConfigError names the file and the broken rule."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML/JSON: {exc}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"configuration file {path} must hold a mapping of keys, got {type(data).__name__}")
    try:
        return AgentConfig.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
