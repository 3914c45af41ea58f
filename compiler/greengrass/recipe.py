"""Writes the Greengrass recipe of a packaged model component (specs/greengrass.md §1)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from compiler.build.targets import TargetSpec
from edge_agent.bundle.reader import sha256_file
from edge_agent.defaults import AGENT_COMPONENT_NAME, AGENT_REGISTRY, AGENT_VENV, DEFAULT_SOCKET, package_version

RECIPE_FORMAT_VERSION = "2020-01-25"
PUBLISHER = "lookout-edge"


def agent_version_requirement(version: str) -> str:
    """Compatible agent versions: same major (same minor while the major is 0)."""
    major, minor, _ = (int(p) for p in version.split(".")[:3])
    if major == 0:
        return f">=0.{minor}.0 <0.{minor + 1}.0"
    return f">={major}.0.0 <{major + 1}.0.0"


def artifact_digest(path: Path) -> str:
    """Base64 of the raw SHA-256 bytes, as the nucleus compares it."""
    return base64.b64encode(bytes.fromhex(sha256_file(path))).decode()


def _agent_cli(component: str, component_version: str, action: str) -> str:
    work = f"{{{AGENT_COMPONENT_NAME}:work:path}}"
    command = (
        f"{work}/{AGENT_VENV}/bin/lookout-edge-agent {action} --registry-dir {work}/{AGENT_REGISTRY} "
        f"--component-name {component} --component-version {component_version}"
    )
    if action == "register":
        command += " --model-arn {configuration:/LookoutVisionModelArn} --path {artifacts:decompressedPath}/model"
    return command


def build_recipe(
    *,
    component_name: str,
    component_version: str,
    description: str,
    model_arn: str,
    target: TargetSpec,
    artifact_uri: str,
    artifact_digest_b64: str | None,
) -> dict[str, Any]:
    """The recipe as a dict; `write_recipes` serialises it to YAML and JSON. Without a digest (an example
    recipe), the cloud computes it when the component version is created."""
    artifact: dict[str, Any] = {
        "URI": artifact_uri,
        "Unarchive": "ZIP",
        "Permission": {"Read": "ALL", "Execute": "NONE"},
    }
    if artifact_digest_b64 is not None:
        artifact.update({"Digest": artifact_digest_b64, "Algorithm": "SHA-256"})
    return {
        "RecipeFormatVersion": RECIPE_FORMAT_VERSION,
        "ComponentName": component_name,
        "ComponentVersion": component_version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": description,
        "ComponentPublisher": PUBLISHER,
        "ComponentConfiguration": {
            "DefaultConfiguration": {"Socket": DEFAULT_SOCKET, "LookoutVisionModelArn": model_arn}
        },
        "ComponentDependencies": {
            AGENT_COMPONENT_NAME: {
                "VersionRequirement": agent_version_requirement(package_version()),
                "DependencyType": "HARD",
            }
        },
        "Manifests": [
            {
                "Platform": {"os": "linux", "architecture": target.greengrass_architecture},
                "Lifecycle": {
                    # Startup registers the bundle with the agent and exits 0 (→ RUNNING); Shutdown removes
                    # the registration only if it is still this version's, so a version swap never unregisters
                    # the newer model.
                    "Startup": {"Script": _agent_cli(component_name, component_version, "register"), "Timeout": 300},
                    "Shutdown": {"Script": _agent_cli(component_name, component_version, "deregister"), "Timeout": 60},
                },
                "Artifacts": [artifact],
            }
        ],
    }


def recipe_file_stem(component_name: str, component_version: str) -> str:
    return f"{component_name}-{component_version}"


def write_recipes(recipe: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `<name>-<version>.yaml` and `.json`; returns both paths."""
    stem = recipe_file_stem(recipe["ComponentName"], recipe["ComponentVersion"])
    yaml_path, json_path = out_dir / f"{stem}.yaml", out_dir / f"{stem}.json"
    yaml_path.write_text(yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False))
    json_path.write_text(json.dumps(recipe, indent=2) + "\n")
    return yaml_path, json_path
