"""Loads an exported TVM module and runs it with the Relax virtual machine."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from edge_agent.engines import cuda_device_code
from edge_agent.errors import RuntimeFailure

RUNTIME_ONLY_ENV = "TVM_USE_RUNTIME_LIB"


def load_runtime_library_only() -> None:
    """Make the coming `import tvm` load libtvm_runtime alone, not the 260 MB compiler library the agent never
    calls (~140 MB less resident memory). Only effective before TVM is first imported in the process."""
    os.environ.setdefault(RUNTIME_ONLY_ENV, "1")


# Libraries of the TVM wheel beside libtvm_runtime that compiled modules may call into, which the full
# `import tvm` loads by itself and the runtime-only import does not: libtvm_runtime_extra holds the sort
# kernels (tvm.contrib.sort.topk/argsort) that TopK and ArgSort compile to, e.g. PatchCore's nearest-neighbour
# search. (libtvm_runtime_cuda is loaded for NVIDIA bundles only: cuda_device_code.)
RUNTIME_EXTENSIONS = ("libtvm_runtime_extra.so",)


@functools.cache
def load_runtime_extensions() -> None:
    """Load RUNTIME_EXTENSIONS (once; a library already loaded by the full import is not loaded twice)."""
    import tvm.libinfo

    folder = Path(tvm.libinfo.find_libtvm_runtime()).parent
    for name in RUNTIME_EXTENSIONS:
        if (folder / name).is_file():
            ctypes.CDLL(str(folder / name), mode=os.RTLD_LOCAL)  # registers its functions with the runtime


class CompiledModule:
    """One loaded module with its own VM; not shared between threads. With `cubin`, it runs on the GPU."""

    def __init__(
        self, library: Path, output_names: list[str], cubin: cuda_device_code.ShippedCubin | None = None
    ) -> None:
        import tvm
        import tvm_ffi
        from tvm.runtime.vm import VirtualMachine

        self._tvm = tvm
        load_runtime_extensions()
        if cubin is not None:
            cuda_device_code.provide(cubin)
            self._device = tvm.cuda(0)
        else:
            self._device = tvm.cpu()
        # keep_module_alive=False: tvm_ffi's default keeps every loaded library, and the ~80 MB of weights it
        # unpacks, alive until the process ends, so each StartModel/StopModel cycle would leak them. Nothing that
        # outlives this object comes from the library (outputs are copied out, tensors come from the runtime).
        self._vm = VirtualMachine(tvm_ffi.load_module(str(library), keep_module_alive=False), self._device)
        self._input: object | None = None  # the device tensor every request's input is copied into
        self.output_names = output_names

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run on one input tensor; outputs by name, in the graph's order.

        Errors raised inside the TVM runtime become `RuntimeFailure` (gRPC UNKNOWN) with TVM's message.
        """
        try:
            if self._input is None or tuple(self._input.shape) != tensor.shape:
                self._input = self._tvm.runtime.empty(tensor.shape, str(tensor.dtype), self._device)
            self._input.copyfrom(tensor)
            result = self._vm["main"](self._input)
            arrays = [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]
        except Exception as exc:
            raise RuntimeFailure(f"the TVM runtime failed: {type(exc).__name__}: {exc}") from exc
        return dict(zip(self.output_names, arrays, strict=True))
