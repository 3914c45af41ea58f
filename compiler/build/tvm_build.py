"""ONNX → TVM Relax → compiled, exported shared library for one target."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from compiler.build.cuda_compile import compile_device_code
from compiler.build.cuda_toolkits import CudaToolkit, installed_toolkits, missing_toolkit_message, pick_toolkit
from compiler.build.targets import CROSS_COMPILERS, TargetSpec
from edge_agent.bundle.model_spec import ModelSpec
from edge_agent.engines.cubin_info import read_cubin

LIBRARY_NAME = "model.so"
# What TVM's CUDA codegen assumes of every architecture we build for (all have at least this much).
CUDA_LIMITS = {"max_shared_memory_per_block": 49152, "max_threads_per_block": 1024, "thread_warp_size": 32}


@dataclass(frozen=True)
class CompiledModel:
    """The exported host library and, for NVIDIA targets, the cubin of its device code."""

    library: Path
    device_code: dict[str, Any] | None = None


def tvm_version() -> str:
    import tvm

    return tvm.__version__


def pin_input_shape(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """A copy of `model` whose image input is static [1, 3, H, W] (TVM and TensorRT want static shapes)."""
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    shape = [1, 3, *spec.input_size]
    for value in pinned.graph.input:
        if value.name == spec.input_name:
            for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=True):
                dim.Clear()
                dim.dim_value = size
    return pinned


def missing_tools(target: TargetSpec, data_dir: Path) -> list[str]:
    """What to install before `target` can be built here (cross compiler, CUDA toolkit); empty when ready."""
    missing = []
    if target.is_cross:
        compiler, package = CROSS_COMPILERS[target.arch]
        if not shutil.which(compiler):
            missing.append(
                f"Cross-compiling for {target.arch} needs {compiler}, which is not installed: apt-get install {package}"
            )
    if target.accelerator == "nvidia" and pick_toolkit(target.cuda_ver, installed_toolkits(data_dir)) is None:
        missing.append(missing_toolkit_message(target.cuda_ver, installed_toolkits(data_dir)))
    return missing


def tvm_target(target: TargetSpec) -> Any:
    """The TVM target: LLVM for CPU targets; CUDA for the GPU with LLVM for the host code."""
    import tvm

    if target.accelerator == "nvidia":
        return tvm.target.Target({"kind": "cuda", "arch": target.gpu_code, **CUDA_LIMITS}, host=target.llvm_target())
    return tvm.target.Target(target.llvm_target())


def _cuda_module(executable: Any) -> Any:
    modules = [executable.mod]
    while modules:
        module = modules.pop()
        if module.kind == "cuda":
            return module
        modules.extend(module.imports)
    raise RuntimeError("TVM produced no CUDA module for an NVIDIA target")


def _write_device_code(executable: Any, target: TargetSpec, toolkit: CudaToolkit, out_dir: Path) -> dict[str, Any]:
    """Compile the module's CUDA source to a cubin with `toolkit`, check what came out, and store it.

    TVM keeps the CUDA source in the library and hands it to `tvm_callback_cuda_compile` when the library
    is loaded; the agent answers that callback with this cubin, so nothing is compiled on the device.
    """
    source = _cuda_module(executable).inspect_source("")
    cubin = compile_device_code(source, target.gpu_code, toolkit)
    info = read_cubin(cubin)
    if info.arch != target.gpu_code or info.toolkit[0] != toolkit.version[0]:
        raise RuntimeError(f"the cubin targets {info.arch} with CUDA {info.toolkit_text}, not what was asked")
    name = f"model.{target.gpu_code}.cubin"
    (out_dir / name).write_bytes(cubin)
    return {
        "file": name,
        "arch": info.arch,
        "toolkit": info.toolkit_text,
        "compiler": toolkit.describe(),
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
    }


def import_model(model: onnx.ModelProto, spec: ModelSpec) -> Any:
    """The pinned ONNX model as a Relax module, weights bound as constants."""
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(model, shape_dict={spec.input_name: [1, 3, *spec.input_size]}, keep_params_in_input=False)


def compile_model(mod: Any, target: TargetSpec, out_dir: Path, data_dir: Path) -> CompiledModel:
    """Compile the (scheduled) Relax module for `target` and export it (with the cross compiler for another
    architecture); for NVIDIA targets also compile the device code with the toolkit matching `cuda-ver` (among
    those of the data directory `data_dir` and this environment)."""
    import tvm

    executable = tvm.compile(mod, tvm_target(target))
    device_code = None
    if target.accelerator == "nvidia":
        toolkit = pick_toolkit(target.cuda_ver, installed_toolkits(data_dir))
        if toolkit is None:
            raise RuntimeError(missing_toolkit_message(target.cuda_ver, installed_toolkits(data_dir)))
        device_code = _write_device_code(executable, target, toolkit, out_dir)
    library = out_dir / LIBRARY_NAME
    if target.is_cross:
        executable.export_library(str(library), cc=CROSS_COMPILERS[target.arch][0])
    else:
        executable.export_library(str(library))
    return CompiledModel(library, device_code)
