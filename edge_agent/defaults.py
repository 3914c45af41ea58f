"""Names the agent and the packaged model components agree on."""

from __future__ import annotations

from importlib import metadata

DEFAULT_SOCKET = "unix:///tmp/aws.iot.lookoutvision.EdgeAgent.sock"
AGENT_COMPONENT_NAME = "lookoutedge.EdgeAgent"
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
