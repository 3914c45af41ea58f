"""Helpers for the agent tests: models packaged by the compiler, client stubs generated the way AWS's docs
do it, and agent processes on a real Unix socket that every test stops."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from compiler.api.service import Service
from tests.conftest import X86_CONFIGURATION, wait_for_job

REPO = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 64 << 20


@dataclass(frozen=True)
class PackagingRequest:
    project: str
    model_file: Path
    metadata: dict[str, Any]
    component: str
    version: str


def package_models(
    service: Service,
    requests: list[PackagingRequest],
    out: Path,
    configurations: dict[str, dict[str, Any]] | None = None,
    timeout: float = 300.0,
) -> dict[str, Path]:
    """Run a real packaging job for each request (x86_64 CPU unless `configurations` gives a component other
    target keys), each given `timeout` seconds, and export it; returns "<component>-<version>" → model.zip."""
    jobs = []
    for request in requests:
        projects = {p["ProjectName"] for p in service.call("ListProjects", {})["Projects"]}
        if request.project not in projects:
            service.call("CreateProject", {"ProjectName": request.project})
        model = service.call(
            "CreateModel",
            {"ProjectName": request.project, "ModelFile": str(request.model_file), "ModelMetadata": request.metadata},
        )["ModelMetadata"]
        base = {
            k: v for k, v in X86_CONFIGURATION["Greengrass"].items() if k not in ("TargetPlatform", "CompilerOptions")
        }
        target = (configurations or {}).get(request.component) or {
            k: X86_CONFIGURATION["Greengrass"][k] for k in ("TargetPlatform", "CompilerOptions")
        }
        greengrass = {**base, **target, "ComponentName": request.component, "ComponentVersion": request.version}
        job = service.call(
            "StartModelPackagingJob",
            {
                "ProjectName": request.project,
                "ModelVersion": model["ModelVersion"],
                "Configuration": {"Greengrass": greengrass},
            },
        )["JobName"]
        jobs.append((request, job))
    archives = {}
    for request, job in jobs:
        description = wait_for_job(service, request.project, job, timeout)
        assert description["Status"] == "SUCCEEDED", description["StatusMessage"]
        exported = service.call(
            "ExportComponent",
            {"ComponentName": request.component, "ComponentVersion": request.version, "Output": str(out)},
        )
        archives[f"{request.component}-{request.version}"] = Path(exported["ArtifactFiles"][0])
    return archives


def generate_client_stubs(dest: Path) -> tuple[ModuleType, ModuleType]:
    """Copy protos/edge-agent.proto to `dest` and run protoc there exactly as AWS's client setup does."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "protos" / "edge-agent.proto", dest)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "--proto_path=.",
            "--python_out=.",
            "--grpc_python_out=.",
            "edge-agent.proto",
        ],
        cwd=dest,
        check=True,
    )
    sys.path.insert(0, str(dest))
    return importlib.import_module("edge_agent_pb2"), importlib.import_module("edge_agent_pb2_grpc")


class AgentProcess:
    """`lookout-edge-agent serve` in a child process on a socket in a fresh /tmp folder."""

    def __init__(
        self,
        work: Path,
        *,
        models_dir: Path | None = None,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        interpreter: list[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.work = work
        self.interpreter = interpreter or [sys.executable]  # e.g. an arm64 Python under qemu
        self.startup_timeout = startup_timeout
        work.mkdir(parents=True, exist_ok=True)
        self.socket_dir = Path(tempfile.mkdtemp(prefix="lea-", dir="/tmp"))  # short: socket paths max 107 bytes
        self.socket_path = self.socket_dir / "agent.sock"
        self.address = f"unix://{self.socket_path}"
        self.registry_dir = work / "registry"
        self.config_path = work / "agent-config.yaml"
        self.log_path = work / "agent.log"
        self.models_dir = models_dir
        self.env = env or {}
        self.write_config(config or {})
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        command = [
            *self.interpreter,
            "-m",
            "edge_agent.cli",
            "serve",
            "--socket",
            self.address,
            "--registry-dir",
            str(self.registry_dir),
            "--config",
            str(self.config_path),
            "--grace",
            "60",
            "--work-dir",
            str(self.work / "work"),
        ]
        if self.models_dir is not None:
            command += ["--models-dir", str(self.models_dir)]
        return command

    def start(self, timeout: float | None = None) -> AgentProcess:
        timeout = timeout or self.startup_timeout
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited with {self.process.returncode}:\n{self.log()}")
            if self.socket_path.exists() and self.healthy():
                return self
            time.sleep(0.2)
        raise AssertionError(f"agent did not become healthy in {timeout} s:\n{self.log()}")

    def healthy(self) -> bool:
        with grpc.insecure_channel(self.address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])

    def write_config(self, config: dict[str, Any]) -> None:
        staging = self.config_path.with_suffix(".tmp")
        staging.write_text(yaml.safe_dump(config))
        os.replace(staging, self.config_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear {count} time(s) in the agent log:\n{self.log()}")

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Write a new configuration file and wait until the agent has applied it."""
        applied = self.log().count("configuration applied")
        self.write_config(config)
        self.wait_for_log("configuration applied", applied + 1)

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, wait for exit; returns the exit code (killing the process if it does not exit)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"agent ignored SIGTERM for {timeout} s:\n{self.log()}") from None

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def wait_for_status(stub: Any, pb: ModuleType, component: str, wanted: int, timeout: float = 120.0) -> Any:
    """Poll DescribeModel until `wanted`; fails early on FAILED (unless FAILED is wanted)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        description = stub.DescribeModel(pb.DescribeModelRequest(model_component=component)).model_description
        if description.status == wanted:
            return description
        if description.status == pb.FAILED:
            raise AssertionError(f"{component} FAILED: {description.status_message}")
        time.sleep(0.2)
    raise AssertionError(f"{component} did not reach {pb.ModelStatus.Name(wanted)} in {timeout} s")


def ensure_running(stub: Any, pb: ModuleType, name: str) -> None:
    """Start the model unless it is RUNNING, and wait until it is."""
    status = stub.DescribeModel(pb.DescribeModelRequest(model_component=name)).model_description.status
    if status != pb.RUNNING:
        assert stub.StartModel(pb.StartModelRequest(model_component=name)).status == pb.STARTING
        wait_for_status(stub, pb, name, pb.RUNNING)


def unpack(bundle_zip: Path, dest: Path) -> Path:
    """Unpack a bundle zip as Greengrass does ({artifacts:decompressedPath}/model)."""
    with zipfile.ZipFile(bundle_zip) as zf:
        zf.extractall(dest)
    return dest


def edited_copy(bundle_zip: Path, dest: Path, component: str, **spec_changes: Any) -> Path:
    """An unpacked copy renamed to `component`, with model-spec changes in its manifest (which is not among
    the files the manifest hashes, so the copy still verifies)."""
    unpack(bundle_zip, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["component"]["name"] = component
    manifest["model"]["spec"].update(spec_changes)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest
