"""`lookout-edge-agent doctor [--bundle B]`: the bring-up check an operator runs on a device before deploying.

It reports the machine (architecture, C library, Python, memory), the NVIDIA driver and GPUs, the TVM runtime
and whether its CUDA support can load here, and where TensorRT's Python bindings are. With a bundle it tries
each of the bundle's engines, exactly as StartModel would, on the golden input, with its latency, and ends
with what will run and what to install for the better engines.
"""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.bundle.manifest import ENGINE_TENSORRT, ENGINE_TVM_CUDA
from edge_agent.bundle.reader import BundleError
from edge_agent.engines.choice import EngineFactory, EngineOptions, golden_check
from edge_agent.engines.gpu_facts import driver_facts, linked_cudart_major

TIMED_RUNS = 20
TIMING_BUDGET_S = 20.0
INSTALL_HINTS = {
    ENGINE_TENSORRT: "install TensorRT's Python bindings (JetPack: `sudo apt install python3-libnvinfer`; x86_64: "
    "NVIDIA's `tensorrt` wheel) and set TensorRTPython in the agent's configuration if they are not in its Python",
    ENGINE_TVM_CUDA: "install a TVM 0.27 runtime built for this device's CUDA (the PyPI apache-tvm wheel's CUDA "
    "runtime needs a CUDA 13 driver), or use the TensorRT engine",
}
Print = Callable[[str], None]


def _memory_available() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB available"
    except OSError:
        pass
    return "unknown"


def _machine(say: Print) -> None:
    libc, libc_version = platform.libc_ver()
    say(f"machine:      {platform.machine()}, {os.cpu_count()} CPUs, {_memory_available()}")
    say(f"C library:    {libc or 'unknown'} {libc_version}")
    say(f"Python:       {platform.python_version()} ({sys.executable})")


def _nvidia(say: Print) -> None:
    facts = driver_facts()
    if facts.cuda_version is None:
        say(f"NVIDIA:       {facts.problem}")
        return
    say(f"NVIDIA:       driver for CUDA {facts.cuda_text}" + (f"; {facts.problem}" if facts.problem else ""))
    for index, gpu in enumerate(facts.gpus):
        major, minor = gpu.compute_capability
        say(f"  GPU {index}:      {gpu.name}, {gpu.arch} (compute {major}.{minor}), {gpu.memory_bytes / 2**30:.1f} GiB")


def _tvm(say: Print) -> None:
    from edge_agent.engines.tvm_runtime import load_runtime_library_only

    load_runtime_library_only()
    try:
        import tvm
        import tvm.libinfo
    except Exception as exc:
        say(f"TVM runtime:  cannot be imported: {type(exc).__name__}: {exc}")
        return
    runtime = Path(tvm.libinfo.find_libtvm_runtime())
    say(f"TVM runtime:  {tvm.__version__} ({runtime})")
    cuda_library = runtime.with_name("libtvm_runtime_cuda.so")
    if not cuda_library.is_file():
        say("  CUDA:       not built in (no libtvm_runtime_cuda.so)")
        return
    needed = linked_cudart_major(cuda_library)
    try:
        ctypes.CDLL(str(cuda_library), mode=os.RTLD_LOCAL)
        loads = "loads"
    except OSError as exc:
        loads = f"does not load: {exc}"
    say(f"  CUDA:       libtvm_runtime_cuda.so, linked against CUDA {needed} runtime; {loads}")


def _tensorrt(say: Print, configured: str | None) -> None:
    from edge_agent.engines.tensorrt_client import candidate_pythons, probe

    for python in candidate_pythons(configured):
        answer = probe(python)
        if answer.get("ok"):
            say(
                f"TensorRT:     {answer['version']} under {python} (Python {answer['python']}; GPU {answer['gpu']}, "
                f"compute {answer['compute_capability']})"
            )
        else:
            say(f"TensorRT:     not under {python}: {str(answer.get('error'))[:300]}")


def _median_ms(run: Callable[[], object]) -> float:
    run()  # warm-up
    times, deadline = [], time.monotonic() + TIMING_BUDGET_S
    while len(times) < TIMED_RUNS and (not times or time.monotonic() < deadline):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _bundle(say: Print, path: Path, options: EngineOptions) -> bool:
    """Try every engine of the bundle; True when one can serve it."""
    import numpy as np

    from edge_agent.bundle.reader import open_bundle

    with tempfile.TemporaryDirectory(prefix="doctor-") as unpack:
        try:
            bundle = open_bundle(path, Path(unpack))
        except (BundleError, OSError) as exc:
            say(f"bundle:       {path}: {exc}")
            return False
        target = bundle.manifest.target
        say(
            f"bundle:       {bundle.component_name} {bundle.component_version}, built for {target.get('arch')} "
            f"{target.get('gpu_code') or 'CPU'}"
        )
        factory = EngineFactory(bundle, options)
        golden = np.load(bundle.root / bundle.manifest.golden.input)
        chosen, missing = None, []
        try:
            for spec in bundle.engines:
                problem = factory.problem(spec)
                if problem is None:
                    problem = _try_engine(say, factory, spec, golden)
                if problem is None:
                    chosen = chosen or spec.label
                else:
                    say(f"  {spec.label + ':':<18}not usable: {problem}")
                    if chosen is None and spec.kind in INSTALL_HINTS:
                        missing.append(spec.kind)
        finally:
            factory.close()
    if chosen is None:
        say("verdict:      no engine of this bundle can run here; see the reasons above")
        return False
    say(f"verdict:      StartModel will serve this bundle with the {chosen}")
    for kind in missing:
        say(f"  for a better engine: {INSTALL_HINTS[kind]}")
    return True


def _try_engine(say: Print, factory: EngineFactory, spec, golden) -> str | None:
    try:
        engine = factory.open(spec, lambda text: say(f"  {spec.label + ':':<18}{text}"))
    except Exception as exc:
        return f"it did not load: {exc}"
    try:
        golden_check(factory.bundle, engine)
        median = _median_ms(lambda: engine.run(golden))
    except Exception as exc:
        return str(exc)
    finally:
        engine.close()
    say(f"  {spec.label + ':':<18}golden check passed; {median:.1f} ms median per inference")
    return None


def run_doctor(bundle: Path | None, options: EngineOptions, say: Print = print) -> int:
    """Print the report; exit code 1 when a bundle was given and no engine can run it."""
    _machine(say)
    _nvidia(say)
    _tvm(say)
    _tensorrt(say, options.tensorrt_python)
    if bundle is None:
        return 0
    return 0 if _bundle(say, bundle, options) else 1
