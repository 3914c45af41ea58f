"""ONNX → TVM Relax → compiled, exported shared library for one target."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from compiler.model_contract import ModelSpec
from compiler.targets import CROSS_COMPILERS, TargetSpec

LIBRARY_NAME = "model.so"


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


def missing_cross_compiler(target: TargetSpec) -> str | None:
    """What to install when `target` needs a cross compiler this machine lacks, else None."""
    if not target.is_cross:
        return None
    compiler, package = CROSS_COMPILERS[target.arch]
    if shutil.which(compiler):
        return None
    return f"Cross-compiling for {target.arch} needs {compiler}, which is not installed: apt-get install {package}"


def compile_model(model: onnx.ModelProto, spec: ModelSpec, target: TargetSpec, out_dir: Path) -> Path:
    """Compile the pinned model for `target` and export it (with the cross compiler for another architecture);
    returns the library path."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, shape_dict={spec.input_name: [1, 3, *spec.input_size]}, keep_params_in_input=False)
    executable = tvm.compile(mod, tvm.target.Target(target.llvm_target()))
    library = out_dir / LIBRARY_NAME
    if target.is_cross:
        executable.export_library(str(library), cc=CROSS_COMPILERS[target.arch][0])
    else:
        executable.export_library(str(library))
    return library
