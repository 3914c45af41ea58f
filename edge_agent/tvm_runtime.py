"""Loads an exported TVM module and runs it with the Relax virtual machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class CompiledModule:
    """One loaded module with its own VM; not shared between threads."""

    def __init__(self, library: Path, output_names: list[str]) -> None:
        import tvm
        from tvm import relax

        self._tvm = tvm
        self._device = tvm.cpu()
        self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self._device)
        self.output_names = output_names

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run on one input tensor; outputs by name, in the graph's order."""
        result = self._vm["main"](self._tvm.runtime.tensor(tensor, self._device))
        arrays = [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]
        return dict(zip(self.output_names, arrays, strict=True))
