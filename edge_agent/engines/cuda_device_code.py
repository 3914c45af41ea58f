"""Hands TVM the cubins shipped in NVIDIA bundles, so no CUDA code is ever compiled on the device.

A TVM library built for CUDA keeps its kernels as CUDA source and, when it is loaded, asks the global
function `tvm_callback_cuda_compile` to compile them. The agent registers that function: it answers with the
cubin the packaging job compiled from exactly that source (matched by sha256) with the toolkit for the
device's CUDA version, and refuses any other source.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from edge_agent.engines.cubin_info import read_cubin
from edge_agent.errors import RuntimeFailure

_lock = threading.Lock()
_cubins: dict[str, bytes] = {}
_registered = False


@dataclass(frozen=True)
class ShippedCubin:
    """The manifest's `compiler.device_code` entry, with its file in the bundle."""

    path: Path
    arch: str
    source_sha256: str

    @classmethod
    def from_device_code(cls, root: Path, code: dict) -> ShippedCubin:
        """From a manifest's `compiler.device_code` entry, its file relative to the bundle folder `root`."""
        return cls(path=root / code["file"], arch=code["arch"], source_sha256=code["source_sha256"])


def _answer(source: str, *_: object) -> bytearray:
    digest = hashlib.sha256(source.encode()).hexdigest()
    with _lock:
        cubin = _cubins.get(digest)
    if cubin is None:
        raise RuntimeError(
            f"no shipped cubin for CUDA source {digest[:12]}: the agent does not compile CUDA on the device; "
            "repackage the model for this GPU"
        )
    return bytearray(cubin)


def _load_cuda_runtime() -> str | None:
    """Load the TVM wheel's CUDA runtime library, which only the full (compiler) `import tvm` loads by itself;
    the agent imports the runtime alone. Returns why it could not be loaded (no libcuda: no driver), or None."""
    import tvm.libinfo

    sidecar = Path(tvm.libinfo.find_libtvm_runtime()).with_name("libtvm_runtime_cuda.so")
    try:
        ctypes.CDLL(str(sidecar), mode=os.RTLD_LOCAL)  # registers the CUDA device API with the runtime
    except OSError as exc:
        return str(exc)
    return None


def provide(shipped: ShippedCubin) -> None:
    """Make `shipped` the answer for its source; check it suits this machine's GPU first."""
    global _registered
    import tvm

    unavailable = _load_cuda_runtime()
    device = tvm.cuda(0)
    if not device.exist:
        raise RuntimeFailure(
            f"the model is compiled for an NVIDIA {shipped.arch} GPU and the TVM runtime sees no CUDA device here "
            f"({unavailable or 'no GPU, or no driver for it'})"
        )
    here = "sm_" + device.compute_version.replace(".", "")
    cubin = shipped.path.read_bytes()
    if read_cubin(cubin).arch != here:
        raise RuntimeFailure(f"the model's device code is for {shipped.arch} and this GPU is {here}: repackage it")
    with _lock:
        _cubins[shipped.source_sha256] = cubin
        if not _registered:
            tvm.register_global_func("tvm_callback_cuda_compile", _answer, override=True)
            _registered = True
