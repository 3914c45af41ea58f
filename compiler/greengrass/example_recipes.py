"""The recipes shipped in recipes/: the agent component, a model component as a packaging job writes it, and
an example client application component. They are written by the same code that writes real ones, with
placeholder S3 locations; `python -m compiler.greengrass.example_recipes recipes` regenerates them (a test checks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from compiler.build.targets import TargetSpec
from compiler.greengrass.agent_component import agent_recipe, artifact_name
from compiler.greengrass.recipe import PUBLISHER, RECIPE_FORMAT_VERSION, build_recipe, write_recipes
from edge_agent.defaults import DEFAULT_SOCKET, package_version

BUCKET_PREFIX = "s3://YOUR-BUCKET/lookout-edge"
MODEL_COMPONENT = "com.example.CircuitBoards"
CLIENT_COMPONENT = "com.example.LookoutVisionClient"
DEVICE_PYTHON = "3.10"  # JetPack 5 with a 3.10 interpreter; build-agent-component --python says otherwise


def client_recipe() -> dict[str, Any]:
    """A client application component: the example client, run against the model component it depends on."""
    venv = "{work:path}/venv"
    return {
        "RecipeFormatVersion": RECIPE_FORMAT_VERSION,
        "ComponentName": CLIENT_COMPONENT,
        "ComponentVersion": "1.0.0",
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": "Example client: detects anomalies in the images of a folder with the Edge Agent.",
        "ComponentPublisher": PUBLISHER,
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "Socket": DEFAULT_SOCKET,
                "ModelComponent": MODEL_COMPONENT,
                "ImageDirectory": "/home/ggc_user/images",
            }
        },
        "ComponentDependencies": {MODEL_COMPONENT: {"VersionRequirement": ">=1.0.0 <2.0.0", "DependencyType": "HARD"}},
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {
                    "Install": {
                        "Script": f"python3 -m venv {venv} && {venv}/bin/pip install grpcio grpcio-tools protobuf "
                        f"opencv-python-headless && {venv}/bin/python -m grpc_tools.protoc "
                        "--proto_path={artifacts:path} --python_out={work:path} --grpc_python_out={work:path} "
                        "edge-agent.proto",
                        "Timeout": 600,
                    },
                    "Run": {
                        "Script": f"PYTHONPATH={{work:path}} {venv}/bin/python {{artifacts:path}}/detect_anomalies.py "
                        "--socket {configuration:/Socket} --model-component {configuration:/ModelComponent} "
                        "{configuration:/ImageDirectory}",
                    },
                },
                "Artifacts": [
                    {"URI": f"{BUCKET_PREFIX}/{CLIENT_COMPONENT}/1.0.0/{name}", "Permission": {"Read": "OWNER"}}
                    for name in ("detect_anomalies.py", "edge-agent.proto")
                ],
            }
        ],
    }


def example_recipes() -> list[dict[str, Any]]:
    version = package_version()
    agent_uri = f"{BUCKET_PREFIX}/lookoutedge.EdgeAgent/{version}/"
    agent = agent_recipe(
        version, DEVICE_PYTHON, [(a, agent_uri + artifact_name(a, DEVICE_PYTHON), None) for a in ("aarch64", "x86_64")]
    )
    model = build_recipe(
        component_name=MODEL_COMPONENT,
        component_version="1.0.0",
        description="Model circuit-boards version 1 compiled for Linux ARM64 CPU",
        model_arn="arn:aws:lookoutvision:us-east-1:123456789012:model/circuit-boards/1",
        target=TargetSpec(arch="aarch64", accelerator=None),
        artifact_uri=f"{BUCKET_PREFIX}/{MODEL_COMPONENT}/1.0.0/model.zip",
        artifact_digest_b64=None,
    )
    return [agent, model, client_recipe()]


def write_example_recipes(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [path for recipe in example_recipes() for path in write_recipes(recipe, folder)]


if __name__ == "__main__":
    for written in write_example_recipes(Path(sys.argv[1] if len(sys.argv) > 1 else "recipes")):
        print(written)
