"""Names the agent and the packaged model components agree on."""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

DEFAULT_SOCKET = "unix:///tmp/aws.iot.lookoutvision.EdgeAgent.sock"
AGENT_COMPONENT_NAME = "lookoutedge.EdgeAgent"
# Greengrass component names (the nucleus' rule): 1-128 of letters, digits, '-', '_', '.'.
COMPONENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Inside the agent component's work folder: its virtual environment and the registry folder that
# model components write their registrations into.
AGENT_VENV = "venv"
AGENT_REGISTRY = "registry"


def package_version() -> str:
    """The installed lookout-edge version (also the agent component's version)."""
    try:
        return metadata.version("lookout-edge")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def default_registry_dir() -> Path:
    """$LOOKOUT_EDGE_AGENT_REGISTRY, else ~/.lookout-edge-agent/registry (a Greengrass recipe passes its own)."""
    configured = os.environ.get("LOOKOUT_EDGE_AGENT_REGISTRY")
    return Path(configured) if configured else Path.home() / ".lookout-edge-agent" / AGENT_REGISTRY


def default_engine_cache_dir() -> Path:
    """Where TensorRT engines built on this device are kept when no --work-dir is given."""
    return Path.home() / ".lookout-edge-agent" / "engines"
