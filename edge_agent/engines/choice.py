"""The engines that can run a bundle on this device, and the choice among them.

A bundle lists its engines best first (bundle.EngineSpec): an NVIDIA bundle a TensorRT engine built here from its
TensorRT-ready ONNX, its TVM CUDA module and its TVM CPU module; a CPU bundle its CPU module. At StartModel the
agent tries them in that order: an engine whose needs this device does not meet is skipped with the reason; one
that loads must reproduce the golden outputs recorded at packaging; the first that does serves. The reasons
for the ones skipped are part of the model's status message, so an operator sees what runs and why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_agent.bundle.manifest import ENGINE_TENSORRT, ENGINE_TVM_CUDA
from edge_agent.bundle.output_parity import compare
from edge_agent.bundle.reader import Bundle, BundleError, EngineSpec
from edge_agent.engines.gpu_facts import driver_facts, linked_cudart_major

if TYPE_CHECKING:
    from edge_agent.engines.tensorrt_client import TensorRTRunner

# The golden check of an fp16 (TensorRT) engine: half precision keeps about 3 significant digits, so scores and
# anomaly maps may differ from ONNX Runtime's fp32 outputs by about 1e-2; masks may flip along their edges.
FP16_ATOL, FP16_RTOL, FP16_MAX_MASK_MISMATCH = 2e-2, 2e-2, 0.02
Progress = Callable[[str], None]


class Engine(Protocol):
    kind: str
    precision: str  # fp32 | fp16

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for one input tensor."""

    def close(self) -> None:
        """Release what the engine holds."""


@dataclass(frozen=True)
class EngineOptions:
    """The agent's engine settings. `tensorrt_python`: the interpreter with TensorRT's Python bindings (None:
    look for one); `precision`: of TensorRT engines (None: the bundle's profile); `cache_dir`: where built
    TensorRT engines are kept."""

    tensorrt_python: str | None = None
    precision: str | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class EngineChoice:
    """The engine that serves, and why each better one does not."""

    spec: EngineSpec
    skipped: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if not self.skipped:
            return f"the {self.spec.label}"
        return f"the {self.spec.label} ({'; '.join(f'{label} not used: {why}' for label, why in self.skipped)})"


class TvmEngine:
    """A TVM module (CPU, or CUDA with the shipped cubin) with its own virtual machine."""

    def __init__(self, spec: EngineSpec, output_names: list[str]) -> None:
        from edge_agent.engines.tvm_runtime import CompiledModule

        self.kind, self.precision = spec.kind, "fp32"
        self._module = CompiledModule(spec.library, output_names, spec.cubin)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self._module.run(tensor)

    def close(self) -> None:
        self._module = None


def _tvm_cuda_problem(spec: EngineSpec) -> str | None:
    """Why the TVM CUDA module cannot run here (driver, CUDA runtime, GPU architecture), or None."""
    facts = driver_facts()
    if facts.cuda_version is None:
        return facts.problem
    import tvm.libinfo

    cuda_library = Path(tvm.libinfo.find_libtvm_runtime()).with_name("libtvm_runtime_cuda.so")
    if not cuda_library.is_file():
        return "the installed TVM runtime has no CUDA support (libtvm_runtime_cuda.so is missing)"
    needed = linked_cudart_major(cuda_library)
    if needed is not None and facts.cuda_version[0] < needed:
        return (
            f"the TVM CUDA runtime needs CUDA {needed} (libcudart.so.{needed}), the driver reports {facts.cuda_text}; "
            f"install a TVM 0.27 runtime built for CUDA {facts.cuda_version[0]}"
        )
    if not facts.gpus:
        return "the driver sees no GPU"
    gpu = facts.gpus[0]
    if spec.cubin is not None and gpu.arch != spec.cubin.arch:
        return f"its device code is for {spec.cubin.arch} and this GPU ({gpu.name}) is {gpu.arch}: repackage for it"
    return None


@dataclass
class EngineFactory:
    """Opens a bundle's engines for one model version; the TensorRT runner it starts is shared by its workers."""

    bundle: Bundle
    options: EngineOptions = field(default_factory=EngineOptions)
    _runner: TensorRTRunner | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def problem(self, spec: EngineSpec) -> str | None:
        """Why `spec` cannot run on this device, found without loading it; None when it may."""
        if spec.kind == ENGINE_TENSORRT:
            from edge_agent.engines.tensorrt_client import tensorrt_problem

            return tensorrt_problem(spec, self.options)
        if spec.kind == ENGINE_TVM_CUDA:
            return _tvm_cuda_problem(spec)
        return self.bundle.manifest.foreign_arch()

    def open(self, spec: EngineSpec, progress: Progress = lambda _: None) -> Engine:
        """Load `spec` (the TensorRT runner starts, and builds or reads the cached engine, on first use)."""
        if spec.kind != ENGINE_TENSORRT:
            return TvmEngine(spec, self.bundle.output_names)
        from edge_agent.engines.tensorrt_client import TensorRTEngine, TensorRTRunner

        with self._lock:
            if self._runner is None:
                self._runner = TensorRTRunner(spec, self.bundle.output_names, self.options, progress)
            return TensorRTEngine(self._runner)

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()


def golden_check(bundle: Bundle, engine: Engine) -> None:
    """Run the golden input and compare with the outputs recorded at packaging; BundleError when they differ by
    more than the manifest's tolerance (or fp16's, for a half-precision TensorRT engine)."""
    golden = bundle.manifest.golden
    expected = {name: np.load(bundle.root / relative) for name, relative in golden.outputs.items()}
    outputs = engine.run(np.load(bundle.root / golden.input))
    if engine.precision == "fp16":
        tolerance = (FP16_ATOL, FP16_RTOL, FP16_MAX_MASK_MISMATCH)
    else:
        tolerance = (golden.atol, golden.rtol, golden.max_mask_mismatch)
    report = compare(expected, outputs, *tolerance)
    if not report.ok:
        raise BundleError("golden check failed: " + "; ".join(report.failures))


def choose_engine(factory: EngineFactory, progress: Progress = lambda _: None) -> tuple[EngineChoice, Engine]:
    """The first of the bundle's engines that can run here and passes the golden check."""
    skipped: list[tuple[str, str]] = []
    for spec in factory.bundle.engines:
        problem = factory.problem(spec)
        if problem is not None:
            skipped.append((spec.label, problem))
            continue
        progress(f"loading the {spec.label}")
        try:
            engine = factory.open(spec, progress)
        except Exception as exc:
            skipped.append((spec.label, f"it did not load: {exc}"))
            continue
        progress(f"checking the {spec.label} against the golden outputs recorded at packaging")
        try:
            golden_check(factory.bundle, engine)
        except Exception as exc:
            engine.close()
            skipped.append((spec.label, str(exc)))
            continue
        return EngineChoice(spec, tuple(skipped)), engine
    reasons = "; ".join(f"{label}: {why}" for label, why in skipped)
    raise BundleError(f"no engine of this bundle can run on this device: {reasons}")
