"""Compiles TVM's generated CUDA C to a cubin for one GPU architecture with a chosen toolkit."""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from pathlib import Path

from compiler.build.cuda_toolkits import CudaToolkit


class DeviceCodeError(Exception):
    """The CUDA compiler refused TVM's device code."""


def _nvrtc_log(nvrtc: ctypes.CDLL, program: ctypes.c_void_p) -> str:
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    return log.value.decode(errors="replace")


def _compile_nvrtc(source: str, arch: str, toolkit: CudaToolkit) -> bytes:
    nvrtc = ctypes.CDLL(str(toolkit.path))
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"model.cu", 0, None, None) != 0:
        raise DeviceCodeError("NVRTC could not create a program from the device code")
    try:
        options = [f"--gpu-architecture={arch}", "-default-device", "--std=c++17"]
        options += [f"-I{d}" for d in toolkit.include_dirs]
        encoded = [o.encode() for o in options]
        if nvrtc.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded)) != 0:
            errors = [line for line in _nvrtc_log(nvrtc, program).splitlines() if "error" in line]
            raise DeviceCodeError(f"{toolkit.describe()} failed for {arch}: {'; '.join(errors[:5])}")
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetCUBIN(program, cubin)
        return cubin.raw
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


def _compile_nvcc(source: str, arch: str, toolkit: CudaToolkit) -> bytes:
    with tempfile.TemporaryDirectory() as work:
        src, out = Path(work) / "model.cu", Path(work) / "model.cubin"
        src.write_text(source)
        result = subprocess.run(
            [str(toolkit.path), "--cubin", f"-arch={arch}", "-O3", "-std=c++17", "-o", str(out), str(src)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line] or [result.stderr.strip()]
            raise DeviceCodeError(f"{toolkit.describe()} failed for {arch}: {'; '.join(errors[:5])}")
        return out.read_bytes()


def compile_device_code(source: str, arch: str, toolkit: CudaToolkit) -> bytes:
    """The cubin (SASS for exactly `arch`, no PTX) of TVM's CUDA source."""
    if toolkit.kind == "nvrtc":
        return _compile_nvrtc(source, arch, toolkit)
    return _compile_nvcc(source, arch, toolkit)
