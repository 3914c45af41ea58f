"""The TensorRT runner process (edge_agent/engines/tensorrt_runner.py) and the agent's client of it, exercised with the
real process, the real protocol and real shared memory. TensorRT itself cannot run on these machines, so the
runner's ONNX Runtime backend (LOOKOUT_EDGE_TENSORRT_BACKEND=onnxruntime) stands in for the engine: everything
here but TensorRTBackend's build/load/run is the code a Jetson runs."""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_agent.bundle.manifest import ENGINE_TENSORRT
from edge_agent.bundle.reader import EngineSpec
from edge_agent.engines import tensorrt_client
from edge_agent.engines.choice import EngineOptions
from edge_agent.engines.tensorrt_client import TensorRTEngine, TensorRTRunner, probe, tensorrt_problem
from edge_agent.engines.tensorrt_runner import BACKEND_ENV
from edge_agent.errors import EngineUnavailable, RuntimeFailure
from tests.models import anomalib_like

SHM = Path("/dev/shm")


@pytest.fixture
def onnxruntime_backend(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "onnxruntime")
    probe.cache_clear()
    yield
    probe.cache_clear()


@pytest.fixture
def engine_files(tmp_path) -> EngineSpec:
    """A small anomalib-style model as a bundle's TensorRT-ready ONNX and profile."""
    model = anomalib_like([1], with_map=True)
    onnx_path, profile_path = tmp_path / "tensorrt" / "model.onnx", tmp_path / "tensorrt" / "profile.json"
    onnx_path.parent.mkdir()
    onnx.save(model, str(onnx_path))
    profile_path.write_text(json.dumps({"precision": "fp32", "workspace_mib": 64}))
    return EngineSpec(ENGINE_TENSORRT, onnx=onnx_path, profile=profile_path, trt_ver="8.5.2")


def _options(tmp_path: Path, **changes) -> EngineOptions:
    return EngineOptions(tensorrt_python=sys.executable, cache_dir=tmp_path / "engines", **changes)


def _names(spec: EngineSpec) -> list[str]:
    return [o.name for o in onnx.load(str(spec.onnx)).graph.output]


def _expected(spec: EngineSpec, tensor: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(spec.onnx), providers=["CPUExecutionProvider"])
    names = _names(spec)
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: tensor}), strict=True))


def _input(spec: EngineSpec) -> np.ndarray:
    dims = onnx.load(str(spec.onnx)).graph.input[0].type.tensor_type.shape.dim
    return np.random.default_rng(0).random([d.dim_value for d in dims], dtype=np.float32)


def test_the_runner_is_python_3_8_code_importing_only_the_standard_library_and_numpy() -> None:
    """JetPack 5's TensorRT bindings exist for its Python 3.8 only."""
    source = Path(tensorrt_client.RUNNER_SCRIPT).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    top_level = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert top_level - {"__future__", "numpy"} <= set(sys.stdlib_module_names), top_level


def test_without_tensorrt_the_probe_says_so(monkeypatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    probe.cache_clear()
    answer = probe(sys.executable)
    assert answer["ok"] is False and "tensorrt" in answer["error"]
    spec = EngineSpec(ENGINE_TENSORRT, onnx=Path("x"), profile=Path("y"), trt_ver="8.5.2")
    problem = tensorrt_problem(spec, EngineOptions(tensorrt_python=sys.executable))
    assert problem.startswith("TensorRT not found on this device") and "TensorRTPython" in problem
    probe.cache_clear()


def test_engine_outputs_travel_through_shared_memory_and_match(onnxruntime_backend, engine_files, tmp_path) -> None:
    runner = TensorRTRunner(engine_files, _names(engine_files), _options(tmp_path), lambda _: None)
    try:
        engines = [TensorRTEngine(runner), TensorRTEngine(runner)]  # two workers, one runner
        tensor = _input(engine_files)
        for engine in engines:
            outputs = engine.run(tensor)
            for name, value in _expected(engine_files, tensor).items():
                np.testing.assert_allclose(outputs[name], value, rtol=1e-6)
        segments = [SHM / e._segment.name for e in engines]
        assert all(s.exists() for s in segments)
        for engine in engines:
            engine.close()
        assert not any(s.exists() for s in segments)  # the agent owns and removes them
    finally:
        runner.close()
    assert runner.pid is None


def test_engines_are_cached_by_onnx_tensorrt_gpu_and_precision(onnxruntime_backend, engine_files, tmp_path) -> None:
    progress: list[str] = []
    first = TensorRTRunner(engine_files, _names(engine_files), _options(tmp_path), progress.append)
    first.close()
    assert first.built and any(p.startswith("building the TensorRT") for p in progress)
    engine = Path(first.engine_file)
    assert engine.parent == tmp_path / "engines" and engine.name.endswith("-fp32.engine")
    digest = __import__("hashlib").sha256(engine_files.onnx.read_bytes()).hexdigest()[:24]
    assert engine.name.startswith(digest) and "trtonnxruntime-" in engine.name
    again = TensorRTRunner(engine_files, _names(engine_files), _options(tmp_path), progress.append)
    again.close()
    assert not again.built and again.engine_file == first.engine_file
    half = TensorRTRunner(engine_files, _names(engine_files), _options(tmp_path, precision="fp16"), lambda _: None)
    half.close()
    assert half.built and half.precision == "fp16" and half.engine_file.endswith("-fp16.engine")
    assert sorted(p.name for p in engine.parent.iterdir()) == sorted([engine.name, Path(half.engine_file).name])


def test_a_killed_runner_fails_the_request_in_flight_with_unavailable_then_restarts(
    onnxruntime_backend, engine_files, tmp_path
) -> None:
    runner = TensorRTRunner(engine_files, _names(engine_files), _options(tmp_path), lambda _: None)
    engine = TensorRTEngine(runner)
    tensor = _input(engine_files)
    try:
        first_pid = runner.pid
        os.kill(first_pid, signal.SIGSTOP)  # the request below is in flight until the runner dies
        outcome: list[BaseException] = []

        def request() -> None:
            try:
                engine.run(tensor)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=request)
        worker.start()
        time.sleep(0.5)
        os.kill(first_pid, signal.SIGKILL)
        worker.join(30)
        assert not worker.is_alive() and outcome, "the request hung on a dead runner"
        assert isinstance(outcome[0], EngineUnavailable) and "restarted for the next request" in str(outcome[0])
        outputs = engine.run(tensor)  # a new runner, from the cached engine
        assert runner.pid not in (None, first_pid) and not runner.built
        expected = _expected(engine_files, tensor)
        np.testing.assert_allclose(outputs["pred_score"], expected["pred_score"], rtol=1e-6)
    finally:
        engine.close()
        runner.close()


def test_a_hung_runner_is_stopped_and_the_request_fails_with_unavailable(
    onnxruntime_backend, engine_files, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(tensorrt_client, "RUN_TIMEOUT_S", 1.0)
    runner = TensorRTRunner(engine_files, _names(engine_files), _options(tmp_path), lambda _: None)
    engine = TensorRTEngine(runner)
    try:
        hung = runner.pid
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(EngineUnavailable, match="stopped answering"):
            engine.run(_input(engine_files))
        assert runner.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # killed and reaped, not left behind
    finally:
        engine.close()
        runner.close()


def test_a_model_the_runner_cannot_load_is_refused_with_its_reason(onnxruntime_backend, engine_files, tmp_path) -> None:
    engine_files.onnx.write_bytes(b"not an onnx file")
    with pytest.raises(RuntimeFailure, match="the TensorRT runner failed: "):
        TensorRTRunner(engine_files, ["pred_score"], _options(tmp_path), lambda _: None)
    assert not list((tmp_path / "engines").iterdir())  # nothing cached, not even half an engine
