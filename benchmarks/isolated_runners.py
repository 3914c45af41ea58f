"""Inference runners for latency figures, each in a process of its own, timed in turns.

Each runtime owns its thread pool as it does in production (the agent's process holds TVM only): in one process,
ONNX Runtime and TVM each pin a worker thread to the same CPU (CPU 1 on this 2-core machine). Turns make the
machine's drift (on this VM, stretches of 10–30% slower runs) affect every runner alike. The child does the
timing; the pipe round trip is not part of any figure.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SETTLE_RUNS = 2  # untimed runs before each timed one: the other runtime's pool may still be spinning


@dataclass(frozen=True)
class RunnerSpec:
    """What a child process runs: `kind` is onnxruntime (ONNX model), bundle (a packaged model.zip) or
    default_schedules (the ONNX model compiled by TVM with no tuning records at all); `spec` is the model
    contract the latter imports with and `target` its packaging target (as in a job's Configuration)."""

    kind: str
    path: Path
    spec: Any = None
    target: dict[str, Any] | None = None


def _onnxruntime(path: Path, tensor: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: tensor}
    return lambda: session.run(None, feed)


def _bundle(archive: Path, tensor: np.ndarray) -> Callable[[], object]:
    import tempfile

    from edge_agent.bundle.manifest import ENGINE_TVM_CPU
    from edge_agent.bundle.reader import open_bundle
    from edge_agent.engines.tvm_runtime import CompiledModule

    bundle = open_bundle(archive, Path(tempfile.mkdtemp(prefix="bench-bundle-")))
    library = next(e.library for e in bundle.engines if e.kind == ENGINE_TVM_CPU)
    module = CompiledModule(library, bundle.output_names)
    return lambda: module.run(tensor)


def _default_schedules(path: Path, spec: Any, target: dict[str, Any], tensor: np.ndarray) -> Callable[[], object]:
    import onnx
    import tvm
    from tvm import relax

    from compiler.build.targets import resolve_target
    from compiler.build.tvm_build import import_model, pin_input_shape, tvm_target

    mod = import_model(pin_input_shape(onnx.load(str(path)), spec), spec)
    vm = relax.VirtualMachine(tvm.compile(mod, tvm_target(resolve_target(target))), tvm.cpu())
    data = tvm.runtime.tensor(tensor)
    return lambda: vm["main"](data)


def _serve(runner: RunnerSpec, tensor: np.ndarray, connection: Any) -> None:
    """Child: build the runner, then answer each request with the milliseconds of one run after SETTLE_RUNS."""
    from edge_agent.models.cpu_threads import configure_thread_pool

    configure_thread_pool()
    if runner.kind == "onnxruntime":
        run = _onnxruntime(runner.path, tensor)
    elif runner.kind == "bundle":
        run = _bundle(runner.path, tensor)
    else:
        run = _default_schedules(runner.path, runner.spec, runner.target, tensor)
    connection.send("ready")
    while connection.recv():
        for _ in range(SETTLE_RUNS):
            run()
        started = time.perf_counter()
        run()
        connection.send((time.perf_counter() - started) * 1000)


def interleaved_medians(runners: dict[str, RunnerSpec], tensor: np.ndarray, repeats: int) -> dict[str, float]:
    """Median ms of each runner, each in its own process, timed in turns so that drift in the machine's speed
    affects them all alike. Every child is stopped before this returns."""
    context = multiprocessing.get_context("spawn")  # no runtime thread pools inherited from this process
    children: dict[str, tuple[Any, Any]] = {}
    try:
        for name, runner in runners.items():
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_serve, args=(runner, tensor, child_end), daemon=True)
            process.start()
            children[name] = (process, parent_end)
        for name, (_, connection) in children.items():
            if connection.recv() != "ready":
                raise RuntimeError(f"runner {name} did not start")
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, (_, connection) in children.items():
                connection.send(True)
                times[name].append(connection.recv())
        return {name: statistics.median(values) for name, values in times.items()}
    finally:
        for process, connection in children.values():
            if process.is_alive():
                connection.send(False)
                process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
