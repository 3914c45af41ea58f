"""The agent's Greengrass component: shipped recipes, the offline wheelhouse, and an install from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from compiler.greengrass.agent_component import build_agent_component, build_project_wheel, resolve
from compiler.greengrass.example_recipes import write_example_recipes
from compiler.greengrass.recipe_rules import recipe_problems
from tests.agent_harness import REPO, AgentProcess
from tests.conftest import BOARDS

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
IPC_OPERATIONS_NEEDING_POLICIES = {
    "aws.greengrass.ipc.mqttproxy": "aws.greengrass#PublishToIoTCore",
    "aws.greengrass.ipc.pubsub": "aws.greengrass#PublishToTopic",
    "aws.greengrass.ShadowManager": "aws.greengrass#UpdateThingShadow",
}


def test_shipped_recipes_are_current_and_follow_the_nucleus_rules(tmp_path) -> None:
    regenerated = {p.name: p for p in write_example_recipes(tmp_path)}
    shipped = sorted(p.name for p in (REPO / "recipes").glob("*") if p.suffix in (".yaml", ".json"))
    assert shipped == sorted(regenerated), "run: python -m compiler.greengrass.example_recipes recipes"
    for name, path in regenerated.items():
        assert (REPO / "recipes" / name).read_text() == path.read_text(), f"recipes/{name} is stale"
        recipe = yaml.safe_load(path.read_text()) if name.endswith(".yaml") else json.loads(path.read_text())
        assert recipe_problems(recipe) == [], name

    agent = yaml.safe_load((REPO / "recipes" / "lookoutedge.EdgeAgent-0.1.0.yaml").read_text())
    access = agent["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    assert {d: [op for p in v.values() for op in p["operations"]] for d, v in access.items()} == {
        d: [op] for d, op in IPC_OPERATIONS_NEEDING_POLICIES.items()
    }
    for manifest in agent["Manifests"]:
        assert "--component-version 0.1.0" in manifest["Lifecycle"]["Run"]["Script"]
        assert "pip install --no-index" in manifest["Lifecycle"]["Install"]["Script"]
    model = yaml.safe_load((REPO / "recipes" / "com.example.CircuitBoards-1.0.0.yaml").read_text())
    assert model["ComponentDependencies"]["lookoutedge.EdgeAgent"]["DependencyType"] == "HARD"
    assert "{lookoutedge.EdgeAgent:work:path}/venv/bin/lookout-edge-agent register" in str(model["Manifests"])
    client = yaml.safe_load((REPO / "recipes" / "com.example.LookoutVisionClient-1.0.0.yaml").read_text())
    assert list(client["ComponentDependencies"]) == ["com.example.CircuitBoards"]


def test_recipe_rules_catch_broken_access_control() -> None:
    recipe = yaml.safe_load((REPO / "recipes" / "lookoutedge.EdgeAgent-0.1.0.yaml").read_text())
    policies = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.pubsub"]
    policy = next(iter(policies.values()))
    policy["operations"] = []
    policy["resource"] = ["x"]
    problems = recipe_problems(recipe)
    assert any("unknown key 'resource'" in p for p in problems)
    assert any(".operations must be a non-empty list of strings" in p for p in problems)


@pytest.mark.slow
def test_aarch64_wheelhouse_resolves_completely_and_stays_lean(tmp_path) -> None:
    build_project_wheel(tmp_path)
    plan = resolve("aarch64", "3.10", tmp_path)
    assert {
        "lookout-edge",
        "apache-tvm",
        "apache-tvm-ffi",
        "numpy",
        "opencv-python-headless",
        "grpcio",
        "grpcio-health-checking",
        "protobuf",
        "awsiotsdk",
        "awscrt",
        "PyYAML",
    } <= set(plan)
    assert not {"onnx", "onnxruntime", "scikit-image", "regex", "grpcio-tools"} & set(plan)


def _substitute(script: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        script = script.replace("{" + name + "}", value)
    assert "{" not in script, script
    return script


@pytest.mark.slow
def test_offline_install_from_the_wheelhouse_runs_the_agent(tmp_path) -> None:
    if shutil.which(f"python{PYTHON}") is None:
        pytest.skip(f"python{PYTHON} (the interpreter the recipe's Install step calls) is not on PATH")
    built, recipe_path = build_agent_component(["x86_64"], PYTHON, tmp_path / "out", "my-bucket", "p/")
    (artifact,) = built
    print(f"\nagent artifact for x86_64 / Python {PYTHON}: {artifact.size_bytes / 2**20:.1f} MiB")
    recipe = yaml.safe_load(recipe_path.read_text())
    assert recipe_problems(recipe) == []
    assert recipe == json.loads(recipe_path.with_suffix(".json").read_text())
    manifest = recipe["Manifests"][0]
    # Greengrass unpacks the ZIP into {artifacts:decompressedPath}/<zip name without .zip>/
    decompressed = tmp_path / "artifacts-unarchived"
    with zipfile.ZipFile(artifact.archive) as zf:
        zf.extractall(decompressed / artifact.archive.stem)
    shipped_proto = decompressed / artifact.archive.stem / "edge-agent.proto"  # where README says clients find it
    assert shipped_proto.read_bytes() == (REPO / "protos" / "edge-agent.proto").read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    socket_dir = Path(tempfile.mkdtemp(prefix="lea-", dir="/tmp"))
    variables = {
        "work:path": str(work),
        "artifacts:decompressedPath": str(decompressed),
        "configuration:/Socket": f"unix://{socket_dir}/agent.sock",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # no index, no find-links but the wheelhouse: as offline as the device
    install = subprocess.run(
        ["bash", "-c", _substitute(manifest["Lifecycle"]["Install"]["Script"], variables)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    venv_python = work / "venv" / "bin" / "python"
    lean = subprocess.run([str(venv_python), "-c", "import onnx"], capture_output=True, env=env)
    assert lean.returncode != 0, "the device install must not contain the compiler's dependencies"

    agent = AgentProcess(tmp_path / "agent")
    agent.socket_dir, agent.socket_path = socket_dir, socket_dir / "agent.sock"
    agent.address = f"unix://{agent.socket_path}"
    agent.command = lambda: ["bash", "-c", _substitute(manifest["Lifecycle"]["Run"]["Script"], variables)]
    agent.env = {"PYTHONPATH": ""}
    with agent:
        assert agent.healthy()
        assert "lookoutedge.EdgeAgent 0.1.0 ready" in agent.log()
    assert agent.process.returncode == 0


def test_model_component_lifecycle_scripts_register_swap_and_deregister(packaged, client_stubs, tmp_path) -> None:
    """The packaged recipes' own Startup/Shutdown scripts, run as the nucleus would (variables substituted)."""
    pb, pb_grpc = client_stubs
    agent_work = tmp_path / "work" / "lookoutedge.EdgeAgent"
    (agent_work / "venv" / "bin").mkdir(parents=True)
    (agent_work / "venv" / "bin" / "lookout-edge-agent").symlink_to(shutil.which("lookout-edge-agent"))
    agent = AgentProcess(tmp_path / "agent")
    agent.registry_dir = agent_work / "registry"

    def run_step(version: str, step: str) -> None:
        archive = packaged[f"{BOARDS}-{version}"]
        recipe = yaml.safe_load((archive.parents[3] / "recipes" / f"{BOARDS}-{version}.yaml").read_text())
        decompressed = tmp_path / "unarchived" / version
        if not decompressed.exists():
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(decompressed / archive.stem)
        arn = recipe["ComponentConfiguration"]["DefaultConfiguration"]["LookoutVisionModelArn"]
        script = _substitute(
            recipe["Manifests"][0]["Lifecycle"][step]["Script"],
            {
                "lookoutedge.EdgeAgent:work:path": str(agent_work),
                "configuration:/LookoutVisionModelArn": arn,
                "artifacts:decompressedPath": str(decompressed),
            },
        )
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def listed() -> dict[str, str]:
        deadline = time.time() + 30
        while True:
            with agent.channel() as channel:
                models = pb_grpc.EdgeAgentStub(channel).ListModels(pb.ListModelsRequest()).models
            state = {m.model_component: m.status_message for m in models}
            if state == expected or time.time() > deadline:
                return state
            time.sleep(0.1)

    with agent:
        run_step("1.0.0", "Startup")
        expected = {BOARDS: "version 1.0.0 is ready; call StartModel"}
        assert listed() == expected
        run_step("2.0.0", "Startup")  # a new component version re-registers
        expected = {BOARDS: "version 2.0.0 is ready; call StartModel"}
        assert listed() == expected
        run_step("1.0.0", "Shutdown")  # the old version's shutdown leaves the new registration alone
        time.sleep(1.0)
        assert listed() == expected
        run_step("2.0.0", "Shutdown")
        expected = {}
        assert listed() == expected
