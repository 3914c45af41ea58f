"""The agent's side of the TensorRT runner (edge_agent/engines/tensorrt_runner.py): finding a Python with TensorRT,
starting the runner, and sending it requests with tensors in shared memory.

One runner process serves one model version; its workers share it (requests are sent one at a time). A runner
that dies or stops answering fails the request in flight with UNAVAILABLE and is started again, from the cached
engine, by the next request.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.bundle.manifest import ENGINE_TENSORRT
from edge_agent.bundle.reader import EngineSpec
from edge_agent.defaults import default_engine_cache_dir
from edge_agent.errors import EngineUnavailable, RuntimeFailure

log = logging.getLogger(__name__)
RUNNER_SCRIPT = Path(__file__).with_name("tensorrt_runner.py")
# Where TensorRT's Python bindings usually are: the agent's own Python (JetPack 6, NVIDIA's x86_64 wheels), then
# the system Pythons (JetPack 5 has them for its Python 3.8 only).
DEFAULT_PYTHONS = ("/usr/bin/python3", "/usr/bin/python3.8")
PROBE_TIMEOUT_S = 60
RUN_TIMEOUT_S = 60  # one inference; a runner silent for longer is taken for hung
LOAD_SILENCE_S = 3600  # an engine build reports progress; an hour of silence is a hang


@functools.cache
def probe(python: str) -> dict[str, Any]:
    """What the runner reports under `python` (TensorRT version, GPU), or {"ok": False, "error": …}."""
    try:
        result = subprocess.run(
            [python, str(RUNNER_SCRIPT), "--probe"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "error": str(exc)}
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"ok": False, "error": (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]}


def candidate_pythons(configured: str | None) -> list[str]:
    if configured:
        return [configured]
    found = [sys.executable, *(p for p in DEFAULT_PYTHONS if os.access(p, os.X_OK))]
    return list(dict.fromkeys(found))


def find_tensorrt(configured: str | None) -> tuple[str | None, dict[str, Any] | str]:
    """The first Python whose runner has TensorRT, with its hello; else (None, what was tried)."""
    tried = []
    for python in candidate_pythons(configured):
        answer = probe(python)
        if answer.get("ok"):
            return python, answer
        tried.append(f"{python}: {str(answer.get('error'))[:200]}")
    return None, "; ".join(tried)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def tensorrt_problem(spec: EngineSpec, options: Any) -> str | None:
    """Why a TensorRT engine cannot be built here, or None."""
    python, answer = find_tensorrt(options.tensorrt_python)
    if python is None:
        hint = " (set TensorRTPython to the Python that has its bindings, e.g. /usr/bin/python3.8 on JetPack 5)"
        return f"TensorRT not found on this device: no Python with its bindings ({answer}){hint}"
    version = str(answer["version"])
    if answer.get("backend") == "TensorRTBackend" and _version(version) < _version(spec.trt_ver or "0"):
        return f"TensorRT {version} on this device is older than the {spec.trt_ver} the model was prepared for"
    return None


class TensorRTRunner:
    """The runner process for one engine; restarted on demand after it dies."""

    def __init__(
        self, spec: EngineSpec, output_names: list[str], options: Any, progress: Callable[[str], None]
    ) -> None:
        python, answer = find_tensorrt(options.tensorrt_python)
        if python is None:
            raise RuntimeFailure(f"TensorRT not found: {answer}")
        self.python, self.version = python, str(answer["version"])
        self._spec, self._options, self._output_names = spec, options, output_names
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._pending, self._answered = b"", True  # unread bytes of the runner's replies; whether it closed or hung
        self._load: dict[str, Any] = {}
        with self._lock:
            self._start(progress)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def engine_file(self) -> str:
        return self._load["engine"]

    @property
    def precision(self) -> str:
        return self._load["precision"]

    @property
    def built(self) -> bool:
        return bool(self._load.get("built"))

    @property
    def layout(self) -> list[dict[str, Any]]:
        """Input then outputs, in the order the segment holds them."""
        return [*self._load["inputs"], *self._load["outputs"]]

    def _start(self, progress: Callable[[str], None]) -> None:
        self._process = subprocess.Popen(
            [self.python, str(RUNNER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the runner's and TensorRT's messages go to the agent's log
        )
        self._pending, self._answered = b"", True
        cache = self._options.cache_dir or default_engine_cache_dir()
        request = {
            "op": "load",
            "onnx": str(self._spec.onnx),
            "profile": str(self._spec.profile),
            "cache_dir": str(cache),
            "precision": self._options.precision,
        }
        try:
            self._load = self._ask(request, LOAD_SILENCE_S, progress)
            names = [o["name"] for o in self._load["outputs"]]
            if sorted(names) != sorted(self._output_names):
                raise RuntimeFailure(f"the TensorRT engine's outputs {names} are not the model's {self._output_names}")
        except Exception:
            self._stop(self._process)
            raise

    def _read_line(self, process: subprocess.Popen, silence_s: float) -> bytes | None:
        """The runner's next line; None when it closed its end or said nothing for `silence_s`. Reads the pipe
        unbuffered, keeping what follows the line for the next call (select() knows nothing of Python's buffers)."""
        fd = process.stdout.fileno()
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], silence_s)
            chunk = os.read(fd, 1 << 16) if ready else None
            if not chunk:
                self._answered = bool(ready)
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line

    def _ask(self, request: dict[str, Any], silence_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
        """Send one request and read until its answer; the runner's death or silence → EngineUnavailable."""
        process = self._process
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
            while True:
                line = self._read_line(process, silence_s)
                if line is None:
                    raise EngineUnavailable(self._gone(process, self._answered))
                answer = json.loads(line)
                if "progress" in answer:
                    progress(answer["progress"])
                    continue
                if not answer.get("ok"):
                    raise RuntimeFailure(f"the TensorRT runner failed: {answer.get('error')}")
                return answer
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise EngineUnavailable(self._gone(process, True, exc)) from None

    def _gone(self, process: subprocess.Popen, answered: object, cause: object = None) -> str:
        """Stop a runner that died or hung; the message for the request in flight."""
        self._stop(process)
        why = f"exited with code {process.returncode}" if answered else "stopped answering and was stopped"
        extra = f" ({cause})" if cause else ""
        log.error("the TensorRT runner (pid %s) %s%s", process.pid, why, extra)
        return f"the TensorRT runner {why}{extra}; it is restarted for the next request"

    def _stop(self, process: subprocess.Popen | None) -> None:
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        if process is self._process:
            self._process = None

    def run(self, segment: str) -> None:
        """Run the engine on the segment's input; its outputs are in the segment when this returns."""
        with self._lock:
            if self._process is None:
                self._start(lambda _: None)
            self._ask({"op": "run", "segment": segment}, RUN_TIMEOUT_S, lambda _: None)

    def close(self) -> None:
        with self._lock:
            self._stop(self._process)


class TensorRTEngine:
    """One worker's view of the shared runner: its own shared-memory segment for input and outputs."""

    kind = ENGINE_TENSORRT

    def __init__(self, runner: TensorRTRunner) -> None:
        self._runner = runner
        self.precision = runner.precision
        layout = runner.layout
        sizes = [int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in layout]
        self._segment = shared_memory.SharedMemory(create=True, size=max(1, sum(sizes)))
        self._views: list[tuple[str, np.ndarray]] = []
        offset = 0
        for tensor, size in zip(layout, sizes, strict=True):
            view = np.ndarray(tensor["shape"], np.dtype(tensor["dtype"]), buffer=self._segment.buf, offset=offset)
            self._views.append((tensor["name"], view))
            offset += size

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        (_, input_view), *outputs = self._views
        if input_view.shape != tensor.shape:
            raise RuntimeFailure(f"the TensorRT engine takes input {input_view.shape}, got {tensor.shape}")
        input_view[...] = tensor
        started = time.perf_counter()
        self._runner.run("/" + self._segment.name)
        log.debug("TensorRT run took %.1f ms", (time.perf_counter() - started) * 1000)
        return {name: view.copy() for name, view in outputs}

    def close(self) -> None:
        self._views = []
        self._segment.close()
        self._segment.unlink()
