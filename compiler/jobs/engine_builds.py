"""Building a bundle's engines for a job: the TensorRT-ready ONNX (NVIDIA targets), the TVM module for the target,
and for NVIDIA targets the TVM module for the host CPU; each module checked against ONNX Runtime where it runs
here (through edge_agent.engines.module_check, as the agent loads it)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compiler.build import parity
from compiler.build.cuda_compile import DeviceCodeError
from compiler.build.targets import TargetSpec
from compiler.build.tensorrt_onnx import (
    TENSORRT_ONNX,
    TENSORRT_PROFILE,
    TensorRTExportError,
    build_profile,
    prepare_for_tensorrt,
    write_tensorrt_files,
)
from compiler.build.tuning import TuningReport, TuningRequest, schedule_module
from compiler.build.tvm_build import CompiledModel, compile_model, import_model, tvm_version
from compiler.jobs.failures import PackagingFailure, raised_by_tvm
from compiler.jobs.plan import PackagingPlan
from edge_agent.bundle import output_parity
from edge_agent.bundle.manifest import CPU_FALLBACK_FOLDER, ENGINE_TENSORRT, ENGINE_TVM_CPU, ENGINE_TVM_CUDA
from edge_agent.bundle.model_spec import ModelSpec

MODULE_CHECK_TIMEOUT_S = 600  # loading and one inference of the largest models, on a busy machine
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuiltEngines:
    """The compiled engines of a job and what the manifest records about them."""

    engines: list[dict[str, Any]]
    primary: CompiledModel
    tuning: TuningReport
    parity: dict[str, Any]


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
    (edge_agent.engines.module_check). A module calling a function only the full TVM library has fails here, not on
    the device."""
    with tempfile.TemporaryDirectory(prefix="module-check-") as scratch:
        given, produced = Path(scratch) / "input.npy", Path(scratch) / "outputs.npz"
        np.save(given, tensor)
        command = [
            sys.executable, "-m", "edge_agent.engines.module_check", "--library", str(compiled.library),
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
    progress: Progress,
    model: onnx.ModelProto,
    target: TargetSpec,
    bundle_dir: Path,
    golden: tuple[ModelSpec, np.ndarray, dict[str, np.ndarray]],
) -> dict[str, Any]:
    """Write the TensorRT-ready ONNX and build profile; returns its entry of the manifest's `engines`."""
    progress(f"Preparing the TensorRT-ready ONNX for TensorRT {target.trt_ver}.")
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
    progress: Progress,
    data_dir: Path,
    model: onnx.ModelProto,
    spec: ModelSpec,
    target: TargetSpec,
    out_dir: Path,
    request: TuningRequest,
) -> tuple[CompiledModel, TuningReport]:
    """Import, schedule (tuning within `request`) and compile the model for `target` into `out_dir`."""
    progress(f"Importing the model into TVM {tvm_version()} and scheduling it for {target.describe()}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        mod, tuning = schedule_module(
            import_model(model, spec),
            target,
            data_dir,
            request,
            progress,
        )
        progress(f"{tuning.describe()} Compiling for {target.describe()}.")
        return compile_model(mod, target, out_dir, data_dir), tuning
    except DeviceCodeError as exc:
        raise PackagingFailure(f"The CUDA compiler refused TVM's code for {target.describe()}: {exc}") from exc
    except Exception as exc:
        if not raised_by_tvm(exc):
            raise  # a defect of ours: the worker fails the job as an internal error and logs the traceback
        raise PackagingFailure(
            f"TVM could not compile the model for {target.describe()}: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:500]}"
        ) from exc


def _parity(
    progress: Progress,
    compiled: CompiledModel,
    target: TargetSpec,
    tensor: np.ndarray,
    reference: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Check the module against ONNX Runtime where it runs here; else say the device checks it."""
    if not _runs_here(target):
        progress(
            f"The {target.describe()} module cannot run here: the agent checks it against the "
            "golden outputs (ONNX Runtime's) when the model starts on the device.",
        )
        return {"checked": "on the device, at StartModel (golden check)"}
    progress(f"Checking the {target.describe()} module against ONNX Runtime on the golden input.")
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


def build_engines(
    progress: Progress,
    data_dir: Path,
    plan: PackagingPlan,
    spec: ModelSpec,
    model: onnx.ModelProto,
    bundle_dir: Path,
    golden: tuple[np.ndarray, dict[str, np.ndarray]],
) -> BuiltEngines:
    """Every engine of the bundle into `bundle_dir`, best first, each checked where it can run here; `golden` is
    the golden input and ONNX Runtime's outputs for it."""
    (tensor, reference), target, engines = golden, plan.target, []
    if target.accelerator == "nvidia":  # first: it takes seconds and can refuse the model
        engines.append(_tensorrt_engine(progress, model, target, bundle_dir, (spec, tensor, reference)))
    compiled, tuning = _compile_module(progress, data_dir, model, spec, target, bundle_dir, plan.tuning)
    parity_record = _parity(progress, compiled, target, tensor, reference)
    engines.append(_module_engine(compiled, target, bundle_dir))
    if target.accelerator == "nvidia":
        host = target.host_cpu()
        # The fallback where no GPU engine can run: the schedules a CPU bundle gets, never a search of its own.
        fallback_tuning = replace(plan.tuning, trials=0)
        fallback, _ = _compile_module(
            progress, data_dir, model, spec, host, bundle_dir / CPU_FALLBACK_FOLDER, fallback_tuning
        )
        parity_record = {"gpu": parity_record, "cpu": _parity(progress, fallback, host, tensor, reference)}
        engines.append(_module_engine(fallback, host, bundle_dir))
    return BuiltEngines(engines, compiled, tuning, parity_record)
