"""One packaging job, step by step: pin shapes → compile → parity check → bundle → publish → catalog."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compiler import parity
from compiler.bundle_writer import BUNDLE_ARCHIVE, write_golden, write_manifest, zip_bundle
from compiler.catalog import ComponentCatalog
from compiler.cuda_compile import DeviceCodeError
from compiler.job_store import JobStore
from compiler.jobs import component_version_arn
from compiler.model_contract import ModelSpec
from compiler.output_store import OutputStore, object_key, s3_uri
from compiler.plan import PackagingPlan, plan_job
from compiler.recipe import artifact_digest, build_recipe, recipe_file_stem, write_recipes
from compiler.recipe_rules import recipe_problems
from compiler.registry import Registry
from compiler.scratch import scratch_folder
from compiler.settings import Settings
from compiler.targets import TargetSpec
from compiler.tensorrt_onnx import (
    TENSORRT_ONNX,
    TENSORRT_PROFILE,
    TensorRTExportError,
    build_profile,
    prepare_for_tensorrt,
    write_tensorrt_files,
)
from compiler.tuning import TuningReport, TuningRequest, schedule_module
from compiler.tvm_build import (
    CompiledModel,
    compile_model,
    import_model,
    missing_tools,
    pin_input_shape,
    tvm_version,
)
from edge_agent import output_parity
from edge_agent.manifest import CPU_FALLBACK_FOLDER, ENGINE_TENSORRT, ENGINE_TVM_CPU, ENGINE_TVM_CUDA, Manifest

MODULE_CHECK_TIMEOUT_S = 600  # loading and one inference of the largest models, on a busy machine


class PackagingFailure(Exception):
    """A failure the user can act on; its text becomes the job's StatusMessage."""


@dataclass(frozen=True)
class PackagingResult:
    """A finished job's ModelPackagingOutputDetails, and what its final StatusMessage should tell the user."""

    output: dict[str, Any]
    notes: str


@dataclass(frozen=True)
class JobContext:
    """What the pipeline works with: the job store, the model registry, the component catalog, the output store
    and the service's settings."""

    store: JobStore
    registry: Registry
    catalog: ComponentCatalog
    output_store: OutputStore
    settings: Settings


def _progress(context: JobContext, seq: int, message: str) -> None:
    context.store.progress(seq, message)


def _runs_here(target: TargetSpec) -> bool:
    """Whether the compiled module can run on this machine (same architecture; a CUDA GPU for NVIDIA)."""
    if target.is_cross:
        return False
    if target.accelerator != "nvidia":
        return True
    import tvm

    return bool(tvm.cuda(0).exist)


def _run_as_the_agent(compiled: CompiledModel, tensor: np.ndarray, output_names: list[str]) -> dict[str, np.ndarray]:
    """Run the module on `tensor` the way the agent loads it: in a child with the TVM runtime library alone
    (edge_agent.module_check). A module calling a function only the full TVM library has fails here, not on
    the device."""
    with tempfile.TemporaryDirectory(prefix="module-check-") as scratch:
        given, produced = Path(scratch) / "input.npy", Path(scratch) / "outputs.npz"
        np.save(given, tensor)
        command = [
            sys.executable, "-m", "edge_agent.module_check", "--library", str(compiled.library),
            "--input", str(given), "--output", str(produced), "--names", *output_names,
        ]  # fmt: skip
        if compiled.device_code is not None:
            command += ["--device-code", json.dumps(compiled.device_code)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=MODULE_CHECK_TIMEOUT_S)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1][:500].rstrip(".")
            raise PackagingFailure(
                f"The compiled module does not run in the agent's TVM runtime: {reason}. This is a packaging defect "
                "for this model; please report it with the model."
            )
        with np.load(produced) as outputs:
            return {name: outputs[name] for name in output_names}


def _tensorrt_engine(
    context: JobContext,
    seq: int,
    model: onnx.ModelProto,
    target: TargetSpec,
    bundle_dir: Path,
    golden: tuple[ModelSpec, np.ndarray, dict[str, np.ndarray]],
) -> dict[str, Any]:
    """Write the TensorRT-ready ONNX and build profile; returns its entry of the manifest's `engines`."""
    _progress(context, seq, f"Preparing the TensorRT-ready ONNX for TensorRT {target.trt_ver}.")
    try:
        prepared = prepare_for_tensorrt(model, target.trt_ver)
    except (TensorRTExportError, ValueError, RuntimeError) as exc:
        raise PackagingFailure(f"Could not prepare the ONNX for TensorRT {target.trt_ver}: {exc}") from exc
    spec, tensor, reference = golden
    report = output_parity.compare(reference, parity.run_onnx_runtime(prepared, spec, tensor))
    if not report.ok:
        raise PackagingFailure("The TensorRT-ready ONNX does not match the source model: " + "; ".join(report.failures))
    profile = build_profile(prepared, spec, target.trt_ver, target.gpu_code, target.trt_precision)
    write_tensorrt_files(bundle_dir, prepared, profile)
    return {
        "kind": ENGINE_TENSORRT,
        "onnx": TENSORRT_ONNX,
        "profile": TENSORRT_PROFILE,
        "trt_ver": target.trt_ver,
        "max_abs_error": report.max_abs_error,
    }


def _compile_module(
    context: JobContext,
    seq: int,
    model: onnx.ModelProto,
    spec: ModelSpec,
    target: TargetSpec,
    out_dir: Path,
    request: TuningRequest,
) -> tuple[CompiledModel, TuningReport]:
    """Import, schedule (tuning within `request`) and compile the model for `target` into `out_dir`."""
    _progress(context, seq, f"Importing the model into TVM {tvm_version()} and scheduling it for {target.describe()}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        mod, tuning = schedule_module(
            import_model(model, spec),
            target,
            context.settings.data_dir,
            request,
            lambda message: _progress(context, seq, message),
        )
        _progress(context, seq, f"{tuning.describe()} Compiling for {target.describe()}.")
        return compile_model(mod, target, out_dir, context.settings.data_dir), tuning
    except DeviceCodeError as exc:
        raise PackagingFailure(f"The CUDA compiler refused TVM's code for {target.describe()}: {exc}") from exc
    except Exception as exc:
        if not raised_by_tvm(exc):
            raise  # a defect of ours: the worker fails the job as an internal error and logs the traceback
        raise PackagingFailure(
            f"TVM could not compile the model for {target.describe()}: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:500]}"
        ) from exc


def raised_by_tvm(exc: BaseException) -> bool:
    """Whether `exc` comes from TVM (its Python packages or, through tvm-ffi, its C++ code) rather than from our
    own code: the first is about the model (or TVM's limits), the second is a defect of ours."""
    import tvm
    import tvm_ffi

    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    if innermost is None:
        return False
    path = Path(innermost.tb_frame.f_code.co_filename)
    if path.suffix in (".cc", ".h", ".cpp", ".cu", ".pxi", ".pyx"):
        return True  # a frame tvm-ffi made for C++ (or its Cython layer)
    packages = (Path(tvm.__file__).parent, Path(tvm_ffi.__file__).parent)
    return any(path.resolve().is_relative_to(package.resolve()) for package in packages)


def _parity(
    context: JobContext,
    seq: int,
    compiled: CompiledModel,
    target: TargetSpec,
    tensor: np.ndarray,
    reference: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Check the module against ONNX Runtime where it runs here; else say the device checks it."""
    if not _runs_here(target):
        _progress(
            context,
            seq,
            f"The {target.describe()} module cannot run here: the agent checks it against the "
            "golden outputs (ONNX Runtime's) when the model starts on the device.",
        )
        return {"checked": "on the device, at StartModel (golden check)"}
    _progress(context, seq, f"Checking the {target.describe()} module against ONNX Runtime on the golden input.")
    report = output_parity.compare(reference, _run_as_the_agent(compiled, tensor, list(reference)))
    if not report.ok:
        raise PackagingFailure(
            f"The compiled model for {target.describe()} does not match ONNX Runtime: "
            + "; ".join(report.failures)
            + ". This is a compiler defect for this model; please report it with the model."
        )
    return {"checked": "at packaging", "max_abs_error": report.max_abs_error, "mask_mismatch": report.mismatch_fraction}


def _module_engine(compiled: CompiledModel, target: TargetSpec, bundle_dir: Path) -> dict[str, Any]:
    """The manifest's `engines` entry of a compiled TVM module."""
    library = compiled.library.relative_to(bundle_dir).as_posix()
    if target.accelerator == "nvidia":
        return {"kind": ENGINE_TVM_CUDA, "library": library, "device_code": compiled.device_code}
    return {"kind": ENGINE_TVM_CPU, "library": library, "mcpu": target.mcpu}


def run_pipeline(context: JobContext, seq: int) -> PackagingResult:
    """Package job `seq`; returns its ModelPackagingOutputDetails and notes for the final status."""
    job = context.store.get(seq)
    greengrass = json.loads(job["configuration"])["Greengrass"]
    plan = PackagingPlan.from_json(job["plan"]) if job["plan"] else plan_job(greengrass, context.settings)
    target = plan.target
    model_version = context.registry.get_model(job["project"], str(job["model_version"]))
    spec = model_version.spec
    name, version = job["component_name"], job["component_version"]
    with scratch_folder(context.settings.data_dir, f"job{seq}") as work:
        bundle_dir = Path(work) / "bundle"
        bundle_dir.mkdir()
        source = onnx.load(str(context.registry.blob_path(model_version.sha256)))
        _progress(
            context, seq, f"Pinning input '{spec.input_name}' to [1, 3, {spec.input_size[0]}, {spec.input_size[1]}]."
        )
        model = pin_input_shape(source, spec)

        missing = missing_tools(target, context.settings.data_dir)
        if missing:
            raise PackagingFailure("; ".join(missing) + ". Then start the job again.")
        tensor = parity.golden_input(spec)
        reference = parity.run_onnx_runtime(model, spec, tensor)
        engines: list[dict[str, Any]] = []  # in the agent's order of preference
        if target.accelerator == "nvidia":  # first: it takes seconds and can refuse the model
            engines.append(_tensorrt_engine(context, seq, model, target, bundle_dir, (spec, tensor, reference)))

        compiled, tuning = _compile_module(context, seq, model, spec, target, bundle_dir, plan.tuning)
        parity_record = _parity(context, seq, compiled, target, tensor, reference)
        engines.append(_module_engine(compiled, target, bundle_dir))
        if target.accelerator == "nvidia":
            host = target.host_cpu()
            # The fallback where no GPU engine can run: the schedules a CPU bundle gets, never a search of its own.
            fallback_request = replace(plan.tuning, trials=0)
            fallback, _ = _compile_module(
                context, seq, model, spec, host, bundle_dir / CPU_FALLBACK_FOLDER, fallback_request
            )
            parity_record = {"gpu": parity_record, "cpu": _parity(context, seq, fallback, host, tensor, reference)}
            engines.append(_module_engine(fallback, host, bundle_dir))

        _progress(context, seq, "Writing the artifact bundle.")
        golden = write_golden(bundle_dir, tensor, reference)
        manifest = Manifest(
            component_name=name,
            component_version=version,
            model={
                "arn": model_version.arn,
                "project": model_version.project,
                "version": str(model_version.version),
                "source_sha256": model_version.sha256,
                "spec": spec.to_dict(),
            },
            outputs=list(reference),
            target=target.to_dict(),
            golden=golden,
            engines=engines,
            details={
                "compiler": {
                    "tvm_version": tvm_version(),
                    "compiler_options": greengrass.get("CompilerOptions"),
                    "library": compiled.library.name,
                    "device_code": compiled.device_code,
                    "tuning": tuning.to_dict(),
                },
                "requirements": target.device_requirements(),
                "parity": parity_record,
            },
        )
        write_manifest(bundle_dir, manifest)
        archive = zip_bundle(bundle_dir, Path(work) / BUNDLE_ARCHIVE)

        bucket, prefix = plan.bucket, plan.prefix
        artifact_key = object_key(prefix, name, version, BUNDLE_ARCHIVE)
        recipe = build_recipe(
            component_name=name,
            component_version=version,
            description=greengrass.get("ComponentDescription")
            or f"Lookout for Vision model {model_version.project} version {model_version.version}",
            model_arn=model_version.arn,
            target=target,
            artifact_uri=s3_uri(bucket, artifact_key),
            artifact_digest_b64=artifact_digest(archive),
        )
        problems = recipe_problems(recipe)
        if problems:
            raise PackagingFailure("The generated recipe breaks Greengrass rules: " + "; ".join(problems))
        yaml_path, json_path = write_recipes(recipe, Path(work))

        _progress(context, seq, f"Writing artifacts to {s3_uri(bucket, object_key(prefix, name, version))}/.")
        stem = recipe_file_stem(name, version)
        recipe_keys = {fmt: object_key(prefix, name, version, f"{stem}.{fmt}") for fmt in ("yaml", "json")}
        try:
            context.output_store.put_file(bucket, artifact_key, archive)
            context.output_store.put_file(bucket, recipe_keys["yaml"], yaml_path)
            context.output_store.put_file(bucket, recipe_keys["json"], json_path)
        except OSError as exc:
            raise PackagingFailure(f"Could not write to the output location s3://{bucket}/: {exc}") from exc

    _progress(context, seq, f"Registering component {name} version {version}.")
    context.catalog.mark_deployable(name, version, recipe_keys, [artifact_key])
    output = {
        "Greengrass": {
            "ComponentVersionArn": component_version_arn(context.settings, name, version),
            "ComponentName": name,
            "ComponentVersion": version,
        }
    }
    return PackagingResult(output, tuning.describe() + tuning.untuned_warning(target))
