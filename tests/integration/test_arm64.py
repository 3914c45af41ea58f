"""Linux ARM64 CPU: cross-compiled on this x86_64 machine, and proven by running the artifact under qemu
user-mode emulation (Debian's qemu-user-static) in an arm64 sysroot built by scripts/arm64-sysroot.sh."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import regex
import yaml

from edge_agent.bundle.output_parity import compare
from tests.agent_harness import REPO, AgentProcess, PackagingRequest, package_models
from tests.conftest import make_service, stop_workers
from tests.models import mobilenet_like
from tests.qemu import arm64_env, arm64_python

ARM64 = {"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}, "CompilerOptions": '{"mattr": ["+neon"]}'}
EM_AARCH64 = 183  # ELF e_machine
ARM_COMPONENT = "com.example.CircuitBoardsArm64"


def _package_for_arm64(work: Path, request: PackagingRequest) -> tuple[Path, Path]:
    """`request` packaged for Linux ARM64 CPU (cross-compiled here): (unpacked folder, model.zip)."""
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc (Debian gcc-aarch64-linux-gnu) is not installed; .ci/run installs it")
    service = make_service(work / "data")
    try:
        archives = package_models(service, [request], work / "gg", configurations={request.component: ARM64})
    finally:
        stop_workers(service)
    archive = archives[f"{request.component}-{request.version}"]
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(work / "bundle")
    return work / "bundle", archive


def _run_under_qemu(bundle: Path, out: Path) -> dict[str, np.ndarray]:
    """The bundle's module run on its golden input by the arm64 Python (emulated): output name → array."""
    python = arm64_python()
    done = subprocess.run(
        [*python, str(REPO / "tests" / "arm64_runner.py"), str(bundle), str(out)],
        env=arm64_env(REPO), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


@pytest.fixture(scope="module")
def arm64_bundle(tmp_path_factory, reference_model, reference_metadata):
    """The reference model packaged for Linux ARM64 CPU: (unpacked folder, model.zip)."""
    request = PackagingRequest("boards", reference_model.model_path, reference_metadata, ARM_COMPONENT, "1.0.0")
    return _package_for_arm64(tmp_path_factory.mktemp("arm64"), request)


def test_arm64_artifact_is_an_aarch64_library_with_an_aarch64_recipe(arm64_bundle) -> None:
    bundle, archive = arm64_bundle
    header = (bundle / "model.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_AARCH64
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["target"]["arch"] == "aarch64" and manifest["target"]["mattr"] == ["+neon"]
    assert manifest["parity"] == {"checked": "on the device, at StartModel (golden check)"}
    recipe_file = archive.parents[3] / "recipes" / f"{ARM_COMPONENT}-1.0.0.yaml"
    assert yaml.safe_load(recipe_file.read_text())["Manifests"][0]["Platform"]["architecture"] == "aarch64"


def test_arm64_module_is_built_from_vectorised_search_free_schedules(arm64_bundle) -> None:
    """No record exists for ARM64: every kernel gets a search-free schedule, and the library's hot loops are NEON
    vector FMAs on four float lanes (`fmla vD.4s, vN.4s, vM.4s`), not scalar code."""
    bundle, _ = arm64_bundle
    tuning = json.loads((bundle / "manifest.json").read_text())["compiler"]["tuning"]
    assert tuning["search_free"] == tuning["tasks"] > 0 and tuning["records_used"] == 0, tuning
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    assert objdump, "aarch64-linux-gnu-objdump comes with gcc-aarch64-linux-gnu (its binutils)"
    code = subprocess.run([objdump, "-d", str(bundle / "model.so")], capture_output=True, text=True, check=True).stdout
    vector_fmas = regex.findall(r"\bfmla\s+v\d+\.4s", code)
    assert len(vector_fmas) > 100, f"{len(vector_fmas)} NEON vector FMAs in the library"


def test_arm64_module_runs_under_qemu_and_matches_x86_64(arm64_bundle, boards_model, tmp_path) -> None:
    """The golden input through the aarch64 module (emulated) and through the x86_64 build of the same model."""
    arm, _ = arm64_bundle
    on_arm = _run_under_qemu(arm, tmp_path / "arm64-outputs.npz")
    golden = json.loads((arm / "manifest.json").read_text())["golden"]
    on_x86 = boards_model.engine.run(np.load(arm / golden["input"]))
    assert compare(on_x86, on_arm).ok, compare(on_x86, on_arm).failures
    reference = {name: np.load(arm / path) for name, path in golden["outputs"].items()}  # ONNX Runtime's
    assert compare(reference, on_arm).ok


def test_arm64_depthwise_kernels_run_under_qemu_and_match_onnx_runtime(tmp_path) -> None:
    """Depthwise convolutions (3×3 on rows widened from 15 to 16, 5×5 stride 2 with a channel multiplier) built
    for NEON from the search-free rules, run emulated, against ONNX Runtime's outputs for the golden input."""
    arm64_python()  # skip before packaging where qemu or the sysroot is missing
    model_file = tmp_path / "mobilenet.onnx"
    onnx.save(mobilenet_like(), model_file)
    request = PackagingRequest("mobilenet", model_file, {}, "com.example.MobileNetArm64", "1.0.0")
    bundle, _ = _package_for_arm64(tmp_path, request)
    manifest = json.loads((bundle / "manifest.json").read_text())
    tuning = manifest["compiler"]["tuning"]
    assert tuning["search_free"] == tuning["tasks"] > 0, tuning
    on_arm = _run_under_qemu(bundle, tmp_path / "outputs.npz")
    reference = {name: np.load(bundle / path) for name, path in manifest["golden"]["outputs"].items()}
    assert compare(reference, on_arm).ok, compare(reference, on_arm).failures


def test_the_agent_refuses_an_arm64_bundle_on_this_x86_64_machine(arm64_bundle, client_stubs, tmp_path) -> None:
    pb, pb_grpc = client_stubs
    bundle, _ = arm64_bundle
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundle, models / "arm64")
    with AgentProcess(tmp_path / "agent", models_dir=models) as agent, agent.channel() as channel:
        (model,) = pb_grpc.EdgeAgentStub(channel).ListModels(pb.ListModelsRequest()).models
    assert model.status == pb.FAILED
    assert "compiled for aarch64 and this device is x86_64" in model.status_message
