"""The agent's Greengrass component: an offline wheelhouse per device architecture and Python, and its recipe.

The wheelhouse holds the agent and every runtime dependency as wheels for the device (downloaded here, on
the build machine), so the recipe's Install step builds a virtual environment with `pip install --no-index`
and the device needs no network. Only the base dependencies go in: no ONNX, no ONNX Runtime, no compiler.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler.build.targets import GREENGRASS_ARCHITECTURES
from compiler.greengrass.output_store import s3_uri
from compiler.greengrass.recipe import PUBLISHER, RECIPE_FORMAT_VERSION, artifact_digest, write_recipes
from edge_agent.config import AgentConfig
from edge_agent.defaults import AGENT_COMPONENT_NAME, AGENT_REGISTRY, AGENT_VENV, package_version
from edge_agent.greengrass_ipc import IOT_CORE_TOPIC, LOCAL_TOPIC, SHADOW_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The newest glibc the wheels may need: 2.31 is Ubuntu 20.04 / JetPack 5.
NEWEST_GLIBC_MINOR = 31
PACKAGE = "lookout-edge"


class BuildError(Exception):
    """pip could not build or resolve the wheelhouse; the message carries pip's own reason."""


@dataclass(frozen=True)
class AgentArtifact:
    arch: str
    archive: Path
    uri: str

    @property
    def size_bytes(self) -> int:
        return self.archive.stat().st_size


def artifact_name(arch: str, python: str) -> str:
    return f"lookout-edge-agent-{arch}-py{python.replace('.', '')}.zip"


def _pip(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"pip {args[0]} failed:\n{done.stderr.strip()[-3000:]}")
    return done.stdout


def _target_options(arch: str, python: str) -> list[str]:
    tag = python.replace(".", "")
    # pip does not widen a manylinux tag to older glibc versions by itself, so every accepted tag is listed.
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(17, NEWEST_GLIBC_MINOR + 1)]
    return [
        "--only-binary=:all:",
        *(option for platform in [f"manylinux2014_{arch}", *platforms] for option in ("--platform", platform)),
        "--python-version", python,
        "--implementation", "cp",
        "--abi", f"cp{tag}",
    ]  # fmt: skip


CLIENT_PROTO = PROJECT_ROOT / "protos" / "edge-agent.proto"


def build_project_wheel(dest: Path) -> Path:
    """The lookout-edge wheel from this source checkout."""
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        raise BuildError(f"build-agent-component needs the lookout-edge source checkout; {PROJECT_ROOT} is not one")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), str(PROJECT_ROOT))
    return next(dest.glob("lookout_edge-*.whl"))


def resolve(arch: str, python: str, wheel_dir: Path) -> dict[str, str]:
    """What pip would install on the device (name → version), resolved without downloading whole wheels."""
    with tempfile.TemporaryDirectory() as target:
        report = _pip(
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-", "--target", target,
            "--find-links", str(wheel_dir), *_target_options(arch, python), f"{PACKAGE}=={package_version()}",
        )  # fmt: skip
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report)["install"]}


def build_wheelhouse(arch: str, python: str, out_dir: Path) -> Path:
    """Download every wheel the agent needs on `arch` with `python` and zip them with the client proto
    (`edge-agent.proto`, which AWS's docs have users copy from the agent's folder); returns the archive."""
    with tempfile.TemporaryDirectory() as staging:
        wheelhouse = Path(staging) / "wheelhouse"
        wheelhouse.mkdir()
        build_project_wheel(wheelhouse)
        _pip(
            "download", "--quiet", "--dest", str(wheelhouse), "--find-links", str(wheelhouse),
            *_target_options(arch, python), f"{PACKAGE}=={package_version()}",
        )  # fmt: skip
        archive = out_dir / artifact_name(arch, python)
        out_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # wheels are compressed already
            for wheel in sorted(wheelhouse.iterdir()):
                zf.write(wheel, wheel.name)
            zf.write(CLIENT_PROTO, CLIENT_PROTO.name)
    return archive


def _policy(description: str, operation: str, resource: str) -> dict[str, Any]:
    return {"policyDescription": description, "operations": [f"aws.greengrass#{operation}"], "resources": [resource]}


def agent_recipe(version: str, python: str, artifacts: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    """The agent component's recipe; `artifacts` = (arch, URI, base64 SHA-256 digest or None) per platform."""
    name = AGENT_COMPONENT_NAME
    venv = f"{{work:path}}/{AGENT_VENV}"
    manifests = []
    for arch, uri, digest in artifacts:
        wheelhouse = f"{{artifacts:decompressedPath}}/{Path(uri).stem}"
        artifact: dict[str, Any] = {"URI": uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER", "Execute": "NONE"}}
        if digest is not None:
            artifact.update({"Digest": digest, "Algorithm": "SHA-256"})
        manifests.append({
            "Platform": {"os": "linux", "architecture": GREENGRASS_ARCHITECTURES[arch]},
            "Lifecycle": {
                "Install": {
                    "Script": f"python{python} -m venv {venv} && {venv}/bin/python -m pip install --no-index "
                    f"--find-links {wheelhouse} {PACKAGE}=={version}",
                    "Timeout": 900,
                },
                "Run": {
                    "Script": f"{venv}/bin/lookout-edge-agent serve --socket {{configuration:/Socket}} "
                    f"--registry-dir {{work:path}}/{AGENT_REGISTRY} --work-dir {{work:path}}/cache "
                    f"--component-name {name} --component-version {version}",
                },
            },
            "Artifacts": [artifact],
        })  # fmt: skip
    return {
        "RecipeFormatVersion": RECIPE_FORMAT_VERSION,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": "Lookout for Vision Edge Agent (open successor): serves AWS.LookoutVision.EdgeAgent "
        "on a Unix socket from the model components that depend on it.",
        "ComponentPublisher": PUBLISHER,
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                **AgentConfig().default_mapping(),
                "accessControl": {
                    "aws.greengrass.ipc.mqttproxy": {
                        f"{name}:mqttproxy:1": _policy(
                            "Status reports to AWS IoT Core", "PublishToIoTCore", IOT_CORE_TOPIC.format(thing="+")
                        )
                    },
                    "aws.greengrass.ipc.pubsub": {
                        f"{name}:pubsub:1": _policy("Status reports on the device", "PublishToTopic", LOCAL_TOPIC)
                    },
                    "aws.greengrass.ShadowManager": {
                        f"{name}:shadow:1": _policy(
                            "Reported state of the agent's named shadow",
                            "UpdateThingShadow",
                            f"$aws/things/*/shadow/name/{SHADOW_NAME}",
                        )
                    },
                },
            }
        },
        "Manifests": manifests,
    }


def build_agent_component(
    archs: list[str], python: str, output: Path, bucket: str, prefix: str
) -> tuple[list[AgentArtifact], Path]:
    """Wheelhouses for `archs` in the greengrass-cli layout under `output`, and the recipe that installs them."""
    version = package_version()
    artifact_dir = output / "artifacts" / AGENT_COMPONENT_NAME / version
    if artifact_dir.exists():
        shutil.rmtree(artifact_dir)
    built = []
    for arch in archs:
        archive = build_wheelhouse(arch, python, artifact_dir)
        key = f"{prefix}{AGENT_COMPONENT_NAME}/{version}/{archive.name}"
        built.append(AgentArtifact(arch, archive, s3_uri(bucket, key)))
    recipe = agent_recipe(version, python, [(a.arch, a.uri, artifact_digest(a.archive)) for a in built])
    recipes = output / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    yaml_path, _ = write_recipes(recipe, recipes)
    return built, yaml_path
