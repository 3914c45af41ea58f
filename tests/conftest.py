"""Shared fixtures: services on temporary data directories, and models built on the fly."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import onnx
import pytest

from compiler.api.service import Service
from compiler.models.reference_model import ReferenceModel, build_reference_model
from compiler.settings import Settings
from tests.models import classifier

X86_CONFIGURATION = {
    "Greengrass": {
        "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
        "CompilerOptions": '{"mcpu": "core-avx2"}',
        "S3OutputLocation": {"Bucket": "my-bucket", "Prefix": "models/"},
        "ComponentName": "com.example.CircuitBoards",
    }
}


# Fixtures that run real packaging jobs of the full-size reference model (15-50 s each on 2 cores): every test
# that uses one belongs to the slow tier (`pytest -m "not slow"` leaves them out).
PACKAGING_FIXTURES = frozenset({"packaged", "nvidia_bundles", "arm64_bundle"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PACKAGING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def stop_workers(service: Service, timeout: float = 120.0) -> None:
    """Wait for the service's worker processes to drain and exit; kill any that do not."""
    deadline = time.time() + timeout
    while service.workers.busy_slots() and time.time() < deadline:
        time.sleep(0.2)
    for row in service.db.query("SELECT DISTINCT worker_pid FROM jobs WHERE worker_pid IS NOT NULL"):
        try:
            if b"compiler.jobs.worker" in Path(f"/proc/{row[0]}/cmdline").read_bytes():
                os.kill(row[0], signal.SIGKILL)
        except OSError:
            pass


def make_service(data_dir: Path, **overrides: object) -> Service:
    return Service(Settings(data_dir=data_dir, **overrides))


@pytest.fixture
def service(tmp_path: Path):
    svc = make_service(tmp_path / "data")
    yield svc
    stop_workers(svc)


@pytest.fixture
def queue_only(tmp_path: Path):
    """A service with no worker slots: jobs stay CREATED, for queue and pagination tests."""
    svc = make_service(tmp_path / "data", max_workers=0, max_queued_jobs=1000)
    yield svc


@pytest.fixture(scope="session")
def reference_model(tmp_path_factory: pytest.TempPathFactory) -> ReferenceModel:
    return build_reference_model(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def reference_metadata(reference_model: ReferenceModel) -> dict:
    return json.loads(reference_model.metadata_path.read_text())


@pytest.fixture
def classifier_file(tmp_path: Path) -> Path:
    path = tmp_path / "classifier.onnx"
    onnx.save(classifier(), path)
    return path


def wait_for_job(service: Service, project: str, job: str, timeout: float = 300.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        description = service.call("DescribeModelPackagingJob", {"ProjectName": project, "JobName": job})
        if description["ModelPackagingDescription"]["Status"] in ("SUCCEEDED", "FAILED"):
            return description["ModelPackagingDescription"]
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not finish in {timeout} s")


# Model components the agent tests serve, all packaged by real packaging jobs.
BOARDS = "com.example.CircuitBoards"
SQRT = "com.example.SqrtScore"


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory, reference_model, reference_metadata) -> dict[str, Path]:
    """Bundles (model.zip) by "<component>-<version>": the reference model as 1.0.0 and (threshold 0.6) as
    2.0.0, and a small model whose score is NaN on black images."""
    from tests.agent_harness import PackagingRequest, package_models
    from tests.models import sqrt_score

    work = tmp_path_factory.mktemp("packaged")
    sqrt_file = work / "sqrt.onnx"
    onnx.save(sqrt_score(), sqrt_file)
    service = make_service(work / "data", max_workers=2)
    try:
        return package_models(
            service,
            [
                PackagingRequest("boards", reference_model.model_path, reference_metadata, BOARDS, "1.0.0"),
                PackagingRequest(
                    "boards", reference_model.model_path, {**reference_metadata, "threshold": 0.6}, BOARDS, "2.0.0"
                ),
                PackagingRequest("sqrt", sqrt_file, {}, SQRT, "1.0.0"),
            ],
            work / "gg",
        )
    finally:
        stop_workers(service)


@pytest.fixture(scope="session")
def client_stubs(tmp_path_factory: pytest.TempPathFactory):
    """(edge_agent_pb2, edge_agent_pb2_grpc) generated from protos/ as a factory-floor client would."""
    from tests.agent_harness import generate_client_stubs

    return generate_client_stubs(tmp_path_factory.mktemp("client-stubs"))


@pytest.fixture(scope="session")
def boards_model(packaged: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The 1.0.0 bundle loaded in the test process: the reference for every agent result."""
    from edge_agent.bundle.reader import open_bundle
    from edge_agent.engines.choice import EngineFactory
    from edge_agent.models.runner import LoadedModel

    bundle = open_bundle(packaged[f"{BOARDS}-1.0.0"], tmp_path_factory.mktemp("direct"))
    return LoadedModel.best(EngineFactory(bundle))[0]
