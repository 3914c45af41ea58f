"""NVIDIA targets: the reference model packaged for Jetson Xavier, ARM64 + NVIDIA (Orin) and x86_64 + NVIDIA,
its device code inspected (architecture, toolkit major), its TensorRT-ready ONNX checked, and — where this
machine has a CUDA GPU — run and compared with ONNX Runtime."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import regex
import yaml

from compiler.build.cuda_toolkits import (
    CudaToolkit,
    installed_toolkits,
    missing_toolkit_message,
    pick_toolkit,
    toolkits_dir,
)
from compiler.build.tensorrt_onnx import parser_limits
from compiler.models.sample_images import held_out_set
from edge_agent.bundle.output_parity import compare
from edge_agent.bundle.reader import verify_bundle
from edge_agent.engines.choice import EngineFactory, EngineOptions
from edge_agent.engines.cubin_info import read_cubin
from edge_agent.engines.gpu_facts import driver_facts
from edge_agent.engines.tensorrt_client import probe
from edge_agent.engines.tensorrt_runner import BACKEND_ENV
from edge_agent.models.runner import LoadedModel
from tests.agent_harness import REPO, AgentProcess, PackagingRequest, ensure_running, package_models
from tests.conftest import make_service, stop_workers, wait_for_job
from tests.models import anomalib_like
from tests.qemu import arm64_env, arm64_python

EM_X86_64, EM_AARCH64 = 62, 183
ROWS = {
    # component: (Configuration.Greengrass target keys, host ELF machine, gpu-code, trt-ver, cuda-ver, Platform)
    "com.example.BoardsXavier": ({"TargetDevice": "jetson_xavier"}, EM_AARCH64, "sm_72", "8.5.2", "11.4", "aarch64"),
    "com.example.BoardsOrin": (
        {
            "TargetPlatform": {"Os": "LINUX", "Arch": "ARM64", "Accelerator": "NVIDIA"},
            "CompilerOptions": '{"gpu-code": "sm_87", "trt-ver": "8.5.2", "cuda-ver": "11.4"}',
        },
        EM_AARCH64,
        "sm_87",
        "8.5.2",
        "11.4",
        "aarch64",
    ),
    "com.example.BoardsT4": (
        {
            "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"},
            "CompilerOptions": '{"gpu-code": "sm_75", "trt-ver": "8.6.1", "cuda-ver": "11.8"}',
        },
        EM_X86_64,
        "sm_75",
        "8.6.1",
        "11.8",
        "amd64",
    ),
}


@pytest.fixture(scope="module")
def nvidia_bundles(tmp_path_factory, reference_model, reference_metadata) -> dict[str, tuple[Path, Path]]:
    """Each row packaged by a real job: component → (unpacked bundle folder, recipe YAML)."""
    if pick_toolkit("11.4", installed_toolkits()) is None:
        pytest.skip(missing_toolkit_message("11.4", installed_toolkits()) + " (the test extra installs it)")
    work = tmp_path_factory.mktemp("nvidia")
    service = make_service(work / "data")
    requests = [
        PackagingRequest("boards", reference_model.model_path, reference_metadata, component, "1.0.0")
        for component in ROWS
    ]
    try:
        archives = package_models(service, requests, work / "gg", configurations={c: r[0] for c, r in ROWS.items()})
    finally:
        stop_workers(service)
    bundles = {}
    for component in ROWS:
        archive = archives[f"{component}-1.0.0"]
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(work / component)
        bundles[component] = (work / component, work / "gg" / "recipes" / f"{component}-1.0.0.yaml")
    return bundles


@pytest.mark.parametrize("component", list(ROWS))
def test_device_code_targets_the_requested_gpu_with_the_matching_toolkit(nvidia_bundles, component: str) -> None:
    _, machine, gpu_code, _, cuda_ver, _ = ROWS[component]
    bundle, _ = nvidia_bundles[component]
    manifest = json.loads((bundle / "manifest.json").read_text())
    code = manifest["compiler"]["device_code"]
    info = read_cubin((bundle / code["file"]).read_bytes())
    assert info.arch == gpu_code
    assert info.toolkit[0] == int(cuda_ver.split(".")[0]), f"cubin made by CUDA {info.toolkit_text} for {cuda_ver}"
    assert (code["arch"], code["toolkit"]) == (info.arch, info.toolkit_text)
    library = (bundle / manifest["compiler"]["library"]).read_bytes()
    assert int.from_bytes(library[18:20], "little") == machine
    # The library carries the CUDA source this cubin was compiled from (a length-prefixed string in TVM's
    # serialised module); the agent matches the two by sha256.
    source_at = library.find(b"\n#ifdef __CUDACC_RTC__")
    assert source_at > 0
    length = int.from_bytes(library[source_at - 8 : source_at], "little")
    assert hashlib.sha256(library[source_at : source_at + length]).hexdigest() == code["source_sha256"]


@pytest.mark.parametrize("component", list(ROWS))
def test_tensorrt_ready_onnx_is_static_checked_and_matches_onnx_runtime(nvidia_bundles, component: str) -> None:
    _, _, gpu_code, trt_ver, _, _ = ROWS[component]
    bundle, _ = nvidia_bundles[component]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [e["kind"] for e in manifest["engines"]] == ["tensorrt", "tvm-cuda", "tvm-cpu"]
    profile = json.loads((bundle / manifest["engines"][0]["profile"]).read_text())
    assert (profile["trt_ver"], profile["gpu_code"], profile["precision"]) == (trt_ver, gpu_code, "fp32")
    model = onnx.load(str(bundle / profile["onnx"]))
    assert hashlib.sha256((bundle / profile["onnx"]).read_bytes()).hexdigest() == profile["onnx_sha256"]
    onnx.checker.check_model(model, full_check=True)
    max_opset, max_ir = parser_limits(trt_ver)
    assert profile["opset"] <= max_opset and model.ir_version <= max_ir
    for value in [*model.graph.input, *model.graph.output]:
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), value.name
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == profile["input"]["shape"]

    import onnxruntime as ort

    golden = manifest["golden"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {profile["input"]["name"]: np.load(bundle / golden["input"])}
    outputs = dict(zip(manifest["outputs"], session.run(manifest["outputs"], feed), strict=True))
    expected = {name: np.load(bundle / path) for name, path in golden["outputs"].items()}
    assert compare(expected, outputs).ok


@pytest.mark.parametrize("component", list(ROWS))
def test_recipe_platform_and_device_requirements(nvidia_bundles, component: str) -> None:
    _, _, gpu_code, trt_ver, cuda_ver, platform = ROWS[component]
    bundle, recipe_file = nvidia_bundles[component]
    recipe = yaml.safe_load(recipe_file.read_text())
    assert recipe["Manifests"][0]["Platform"] == {"os": "linux", "architecture": platform}
    requirements = json.loads((bundle / "manifest.json").read_text())["requirements"]
    assert requirements["gpu"].startswith(gpu_code) and trt_ver in requirements["tensorrt"]
    assert requirements["cuda_driver"].startswith(f"CUDA {cuda_ver.split('.')[0]}.x")


@pytest.mark.parametrize("component", list(ROWS))
def test_every_nvidia_bundle_carries_a_cpu_module_for_its_host(nvidia_bundles, component: str) -> None:
    _, machine, gpu_code, *_ = ROWS[component]
    bundle, _ = nvidia_bundles[component]
    manifest = json.loads((bundle / "manifest.json").read_text())
    cpu = manifest["engines"][-1]
    assert cpu["kind"] == "tvm-cpu" and cpu["library"] == "cpu/model.so"
    assert cpu["mcpu"] == {"sm_72": "carmel", "sm_87": "cortex-a78ae"}.get(gpu_code, "core-avx2")
    library = (bundle / cpu["library"]).read_bytes()
    assert int.from_bytes(library[18:20], "little") == machine and b"__CUDACC_RTC__" not in library
    # x86_64 CPU modules run here, so the job checked them against ONNX Runtime; ARM64 ones are checked on the device.
    expected = "at packaging" if machine == EM_X86_64 else "on the device, at StartModel (golden check)"
    assert manifest["parity"]["cpu"]["checked"] == expected


def test_without_a_gpu_an_nvidia_bundle_serves_from_its_cpu_module_and_says_why(nvidia_bundles) -> None:
    bundle, _ = nvidia_bundles["com.example.BoardsT4"]
    factory = EngineFactory(verify_bundle(bundle), EngineOptions(tensorrt_python=sys.executable))
    if driver_facts().gpus:
        pytest.skip("this machine has an NVIDIA GPU: test_nvidia_module_runs_on_the_gpu covers it")
    model, choice = LoadedModel.best(factory)
    assert choice.spec.kind == "tvm-cpu"
    reasons = dict(choice.skipped)
    assert reasons["TensorRT engine"].startswith("TensorRT not found on this device")
    assert reasons["TVM CUDA module"] == driver_facts().problem  # e.g. no NVIDIA driver (libcuda.so.1 not found)
    assert "TVM CUDA module not used: " in choice.describe()
    golden = verify_bundle(bundle).manifest.golden
    assert model.engine.run(np.load(bundle / golden.input)).keys() == set(golden.outputs)


@pytest.mark.slow
def test_nvidia_module_runs_on_the_gpu_and_matches_onnx_runtime(tmp_path, reference_model, reference_metadata) -> None:
    """Packages the reference model for this machine's GPU (CUDA 11.8 cubin) and runs it against the golden
    outputs (ONNX Runtime's). Needs an NVIDIA GPU whose driver runs the apache-tvm wheel's CUDA runtime
    (libcudart.so.13, driver ≥ 580) and the whole packaging install beside it: `python3 -m pytest -q
    tests/compiler/test_nvidia_targets.py` on such a machine. Where only the runtime can be carried to the GPU (the lent
    machine takes 64 MiB, TVM's compiler is 260 MB), scripts/gpu-check.sh runs the same module check there."""
    import tvm

    if not tvm.cuda(0).exist:
        pytest.skip("no CUDA GPU visible to TVM on this machine (run on a GPU machine: see the docstring)")
    here = "sm_" + tvm.cuda(0).compute_version.replace(".", "")
    component = "com.example.BoardsHere"
    options = json.dumps({"gpu-code": here, "trt-ver": "8.6.1", "cuda-ver": "11.8"})
    target = {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"}, "CompilerOptions": options}
    service = make_service(tmp_path / "data")
    try:
        request = PackagingRequest("boards", reference_model.model_path, reference_metadata, component, "1.0.0")
        archive = package_models(service, [request], tmp_path / "gg", {component: target})[f"{component}-1.0.0"]
    finally:
        stop_workers(service)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["parity"]["gpu"]["checked"] == "at packaging"  # the job itself ran it on this GPU
    _, choice = LoadedModel.best(EngineFactory(verify_bundle(tmp_path / "bundle")))  # golden check included
    assert choice.spec.kind == "tvm-cuda", choice.describe()


def _failed_job(data_dir: Path, model_file: Path, metadata: dict, target: dict) -> str:
    """Run one packaging job that must fail; returns its StatusMessage."""
    service = make_service(data_dir)
    try:
        service.call("CreateProject", {"ProjectName": "boards"})
        model = service.call(
            "CreateModel", {"ProjectName": "boards", "ModelFile": str(model_file), "ModelMetadata": metadata}
        )["ModelMetadata"]
        greengrass = {**target, "ComponentName": "com.example.Refused", "S3OutputLocation": {"Bucket": "out"}}
        job = service.call(
            "StartModelPackagingJob",
            {
                "ProjectName": "boards",
                "ModelVersion": model["ModelVersion"],
                "Configuration": {"Greengrass": greengrass},
            },
        )["JobName"]
        description = wait_for_job(service, "boards", job)
    finally:
        stop_workers(service)
    assert description["Status"] == "FAILED"
    return description["StatusMessage"]


def test_a_job_without_a_toolkit_for_the_cuda_major_fails_naming_the_install_command(
    tmp_path, reference_model, reference_metadata
) -> None:
    if pick_toolkit("12.4", installed_toolkits()) is not None:
        pytest.skip("a CUDA 12 toolkit is installed in this environment")
    target = {
        "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"},
        "CompilerOptions": '{"gpu-code": "sm_86", "trt-ver": "8.6.1", "cuda-ver": "12.4"}',
    }
    message = _failed_job(tmp_path, reference_model.model_path, reference_metadata, target)
    assert "needs a CUDA 12.x compiler" in message and "`lookout-edge install-cuda-toolkit 12`" in message


def test_g5_options_from_the_original_table_refuse_an_opset_17_model_with_the_reason(
    tmp_path, reference_model, reference_metadata
) -> None:
    """g5.xlarge's `sm_80 / 8.2.0 / 11.2` is a valid target, but TensorRT 8.2 parses opset ≤ 13 and the
    reference model is opset 17 (ONNX's converter cannot take its Identity below opset 16)."""
    target = {
        "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"},
        "CompilerOptions": '{"gpu-code": "sm_80", "trt-ver": "8.2.0", "cuda-ver": "11.2"}',
    }
    message = _failed_job(tmp_path, reference_model.model_path, reference_metadata, target)
    assert "TensorRT 8.2.0 parses up to opset 13" in message and "Export the model with opset 13 or lower" in message


def test_toolkit_choice_keeps_the_major_and_prefers_the_exact_minor() -> None:
    def kit(major: int, minor: int) -> CudaToolkit:
        return CudaToolkit("nvrtc", (major, minor), Path(f"/libnvrtc.so.{major}.{minor}"))

    kits = (kit(11, 4), kit(11, 8), kit(12, 2), kit(13, 0))
    assert pick_toolkit("11.4", kits).version == (11, 4)
    assert pick_toolkit("11.2", kits).version == (11, 8)
    assert pick_toolkit("12.6", kits).version == (12, 2)
    assert pick_toolkit("10.2", kits) is None
    assert "found: nvcc 13.0" in missing_toolkit_message("12.4", (CudaToolkit("nvcc", (13, 0), Path("/nvcc")),))


def test_with_tensorrt_present_its_engine_is_chosen_first(nvidia_bundles, monkeypatch, tmp_path) -> None:
    """The TensorRT runner's ONNX Runtime backend stands in for TensorRT (tests/edge_agent/test_tensorrt_runner.py)."""
    monkeypatch.setenv(BACKEND_ENV, "onnxruntime")
    probe.cache_clear()
    try:
        bundle, _ = nvidia_bundles["com.example.BoardsT4"]
        factory = EngineFactory(verify_bundle(bundle), EngineOptions(sys.executable, cache_dir=tmp_path / "engines"))
        try:
            model, choice = LoadedModel.best(factory)  # golden check included
            assert choice.spec.kind == "tensorrt" and choice.describe() == "the TensorRT engine"
            model.close()
        finally:
            factory.close()
        assert len(list((tmp_path / "engines").glob("*-fp32.engine"))) == 1
    finally:
        probe.cache_clear()


def _served_status(agent: AgentProcess, pb, pb_grpc, component: str) -> str:
    """Start `component`, score one sample image through DetectAnomalies, return DescribeModel's status."""
    rgb = held_out_set(1, seed=3)[0].rgb
    with agent.channel() as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        ensure_running(stub, pb, component)
        bitmap = pb.Bitmap(width=rgb.shape[1], height=rgb.shape[0], byte_data=rgb.tobytes())
        result = stub.DetectAnomalies(
            pb.DetectAnomaliesRequest(model_component=component, bitmap=bitmap), timeout=600
        ).detect_anomaly_result
        assert 0.0 <= result.confidence <= 1.0
        return stub.DescribeModel(pb.DescribeModelRequest(model_component=component)).model_description.status_message


def test_the_agent_serves_an_nvidia_bundle_here_and_says_which_engine_and_why(
    nvidia_bundles, client_stubs, tmp_path
) -> None:
    if driver_facts().gpus:
        pytest.skip("this machine has an NVIDIA GPU; the fallback is shown where there is none")
    pb, pb_grpc = client_stubs
    bundle, _ = nvidia_bundles["com.example.BoardsT4"]
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundle, models / "t4")
    with AgentProcess(tmp_path / "agent", models_dir=models) as agent:
        status = _served_status(agent, pb, pb_grpc, "com.example.BoardsT4")
        log = agent.log()
    assert "on the TVM CPU module (TensorRT engine not used: TensorRT not found on this device" in status
    assert f"TVM CUDA module not used: {driver_facts().problem}" in status
    assert "TVM CPU module" in log  # the agent's log says the same
    with AgentProcess(tmp_path / "agent-trt", models_dir=models, env={BACKEND_ENV: "onnxruntime"}) as agent:
        assert _served_status(agent, pb, pb_grpc, "com.example.BoardsT4").endswith("on the TensorRT engine")


@pytest.mark.slow
def test_a_jetson_xavier_bundle_serves_under_qemu_from_its_cpu_module(nvidia_bundles, client_stubs, tmp_path) -> None:
    """The agent itself (arm64 Python, TVM runtime, gRPC) emulated: what a Xavier without GPU engines does."""
    python = arm64_python()
    pb, pb_grpc = client_stubs
    bundle, _ = nvidia_bundles["com.example.BoardsXavier"]
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundle, models / "xavier")
    agent = AgentProcess(
        tmp_path / "agent", models_dir=models, interpreter=python, env=arm64_env(REPO), startup_timeout=600
    )
    with agent:
        status = _served_status(agent, pb, pb_grpc, "com.example.BoardsXavier")
    assert "on the TVM CPU module (TensorRT engine not used: TensorRT not found on this device" in status
    assert "TVM CUDA module not used: no NVIDIA driver" in status


def _doctor(command: list[str], bundle: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*command, "-m", "edge_agent.cli", "doctor", "--bundle", str(bundle)],
        capture_output=True, text=True, timeout=1200, cwd=REPO, env=env,
    )  # fmt: skip


def test_doctor_reports_this_machine_and_each_engine_of_a_bundle(nvidia_bundles) -> None:
    bundle, _ = nvidia_bundles["com.example.BoardsT4"]
    done = _doctor([sys.executable], bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout
    assert f"machine:      {platform.machine()}" in report and "TVM runtime:  0.27" in report
    assert "TensorRT:     not under" in report
    assert "TensorRT engine:  not usable: TensorRT not found on this device" in report
    assert regex.search(r"TVM CPU module:   golden check passed; \d+\.\d ms median per inference", report), report
    assert "verdict:      StartModel will serve this bundle with the TVM CPU module" in report
    assert "for a better engine: install TensorRT's Python bindings" in report


def test_doctor_says_when_no_engine_can_run_a_bundle(nvidia_bundles, tmp_path) -> None:
    """An NVIDIA bundle packaged before bundles carried a CPU module (only its CUDA module), on a machine
    without a GPU."""
    source, _ = nvidia_bundles["com.example.BoardsT4"]
    bundle = tmp_path / "old"
    shutil.copytree(source, bundle, ignore=shutil.ignore_patterns("cpu", "tensorrt"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["engines"], manifest["format_version"], manifest["sizes"]  # edition 1
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(("cpu/", "tensorrt/"))}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    if driver_facts().gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    done = _doctor([sys.executable], bundle)
    assert done.returncode == 1
    assert "TVM CUDA module:  not usable: " in done.stdout and "no engine of this bundle can run here" in done.stdout


@pytest.mark.slow
def test_doctor_under_qemu_gives_an_honest_arm64_report(nvidia_bundles) -> None:
    python = arm64_python()
    bundle, _ = nvidia_bundles["com.example.BoardsXavier"]
    done = _doctor(python, bundle, env=arm64_env(REPO))
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout
    assert "machine:      aarch64" in report and "NVIDIA:       no NVIDIA driver" in report
    assert "bundle:       com.example.BoardsXavier 1.0.0, built for aarch64 sm_72" in report
    assert "TVM CUDA module:  not usable: no NVIDIA driver" in report
    assert "TVM CPU module:   golden check passed" in report
    assert "verdict:      StartModel will serve this bundle with the TVM CPU module" in report


CUDA12_CACHE = Path(os.environ.get("LOOKOUT_EDGE_TOOLKIT_CACHE", Path.home() / ".cache/lookout-edge"))


@pytest.mark.slow
def test_one_installation_packages_for_cuda_11_and_cuda_12_devices(tmp_path) -> None:
    """CUDA 11 from the environment's wheels (the test extra), CUDA 12 from the data directory, where
    `lookout-edge install-cuda-toolkit 12` puts it (.ci/run runs it with --data-dir ~/.cache/lookout-edge)."""
    cuda12 = toolkits_dir(CUDA12_CACHE) / "cuda12"
    if not (cuda12 / "nvidia" / "cuda_nvrtc").is_dir():
        pytest.skip(f"no CUDA 12 toolkit at {cuda12}: lookout-edge --data-dir {CUDA12_CACHE} install-cuda-toolkit 12")
    data = tmp_path / "data"
    toolkits_dir(data).mkdir(parents=True)
    (toolkits_dir(data) / "cuda12").symlink_to(cuda12)
    model_file, metadata = tmp_path / "model.onnx", {}
    onnx.save(anomalib_like([1]), str(model_file))
    options = {"sm_75": ("11.8", "8.6.1"), "sm_86": ("12.4", "8.6.1")}
    configurations = {
        f"com.example.Cuda{cuda[:2]}": {
            "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"},
            "CompilerOptions": json.dumps({"gpu-code": gpu, "trt-ver": trt, "cuda-ver": cuda}),
        }
        for gpu, (cuda, trt) in options.items()
    }
    service = make_service(data)
    try:
        requests = [PackagingRequest("mixed", model_file, metadata, c, "1.0.0") for c in configurations]
        archives = package_models(service, requests, tmp_path / "gg", configurations=configurations)
    finally:
        stop_workers(service)
    for (gpu, (cuda, _)), component in zip(options.items(), configurations, strict=True):
        with zipfile.ZipFile(archives[f"{component}-1.0.0"]) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            code = manifest["compiler"]["device_code"]
            info = read_cubin(zf.read(code["file"]))
        assert (info.arch, info.toolkit[0]) == (gpu, int(cuda.split(".")[0])), code
        assert (f" in {toolkits_dir(data)}" in code["compiler"]) == (cuda.startswith("12")), code["compiler"]
