"""What this machine's NVIDIA driver says: its CUDA version and the GPUs it sees, read through libcuda with ctypes
(no TVM, no CUDA toolkit), and which CUDA runtime the TVM wheel's CUDA library was linked against."""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass
from pathlib import Path

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CUDART_SONAME = re.compile(rb"libcudart\.so\.(\d+)")


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: tuple[int, int]
    memory_bytes: int

    @property
    def arch(self) -> str:
        """The architecture as gpu-code spells it, e.g. sm_72."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class DriverFacts:
    """`cuda_version` is None when there is no usable driver; `problem` then says why."""

    cuda_version: tuple[int, int] | None
    gpus: tuple[Gpu, ...] = ()
    problem: str | None = None

    @property
    def cuda_text(self) -> str:
        return f"{self.cuda_version[0]}.{self.cuda_version[1]}" if self.cuda_version else "none"


def _check(code: int, call: str) -> None:
    if code != 0:
        raise OSError(f"{call} returned CUDA error {code}")


@functools.cache
def driver_facts() -> DriverFacts:
    """The driver's CUDA version and GPUs (read once per process)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return DriverFacts(None, problem="no NVIDIA driver (libcuda.so.1 not found)")
    try:
        version = ctypes.c_int()
        _check(cuda.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
        cuda_version = (version.value // 1000, version.value % 1000 // 10)
        if cuda.cuInit(0) != 0:
            return DriverFacts(cuda_version, problem="the driver found no usable GPU (cuInit failed)")
        count = ctypes.c_int()
        _check(cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
        gpus = []
        for ordinal in range(count.value):
            device, name = ctypes.c_int(), ctypes.create_string_buffer(256)
            major, minor, memory = ctypes.c_int(), ctypes.c_int(), ctypes.c_size_t()
            _check(cuda.cuDeviceGet(ctypes.byref(device), ordinal), "cuDeviceGet")
            _check(cuda.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
            for value, attribute in (
                (major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                (minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            ):
                _check(cuda.cuDeviceGetAttribute(ctypes.byref(value), attribute, device), "cuDeviceGetAttribute")
            _check(cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device), "cuDeviceTotalMem")
            gpus.append(Gpu(name.value.decode(errors="replace"), (major.value, minor.value), memory.value))
    except (OSError, AttributeError) as exc:
        return DriverFacts(None, problem=f"the NVIDIA driver did not answer: {exc}")
    return DriverFacts(cuda_version, tuple(gpus))


def linked_cudart_major(library: Path) -> int | None:
    """The CUDA runtime major a shared library was linked against (its `libcudart.so.N` dependency)."""
    try:
        match = CUDART_SONAME.search(library.read_bytes())
    except OSError:
        return None
    return int(match[1]) if match else None
