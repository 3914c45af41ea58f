"""Drives a real Edge Agent process: DetectAnomalies latency by image size and transport, the agent's own
overhead (latency minus the inference time it reports in its `lookout-edge-inference-ms` trailer),
throughput with concurrent clients, and peak RSS."""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TRAILER = "lookout-edge-inference-ms"


@dataclass(frozen=True)
class RunningAgent:
    address: str
    component: str
    pid: int
    pb: ModuleType
    pb_grpc: ModuleType


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def running_agent(bundle: Path, pb: ModuleType, pb_grpc: ModuleType, concurrency: int = 1) -> Iterator[RunningAgent]:
    """An agent serving `bundle` (a model.zip) on a private socket, its model started; stopped on exit."""
    import grpc

    work = Path(tempfile.mkdtemp(prefix="lookout-edge-bench-"))
    (work / "models").mkdir()
    shutil.copy(bundle, work / "models" / "model.zip")
    (work / "config.json").write_text(json.dumps({"Concurrency": concurrency, "MaxQueuedRequests": 1000}))
    address = f"unix://{work}/agent.sock"
    command = [sys.executable, "-m", "edge_agent.cli", "serve", "--socket", address, "--log-level", "WARNING"]
    command += ["--models-dir", str(work / "models"), "--registry-dir", str(work / "registry")]
    agent = subprocess.Popen([*command, "--config", str(work / "config.json")], cwd=REPO)
    try:
        deadline = time.time() + 120
        while not (work / "agent.sock").exists():
            if agent.poll() is not None or time.time() > deadline:
                raise RuntimeError("the agent did not start")
            time.sleep(0.1)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.EdgeAgentStub(channel)
            name = stub.ListModels(pb.ListModelsRequest()).models[0].model_component
            stub.StartModel(pb.StartModelRequest(model_component=name))
            describe = pb.DescribeModelRequest(model_component=name)
            while (status := stub.DescribeModel(describe).model_description).status != pb.RUNNING:
                if status.status == pb.FAILED or time.time() > deadline + 600:
                    raise RuntimeError(f"the model did not start: {status.status_message}")
                time.sleep(0.2)
        yield RunningAgent(address, name, agent.pid, pb, pb_grpc)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def _segment(size: int) -> shared_memory.SharedMemory:
    return shared_memory.SharedMemory(create=True, size=size)


def detect_latency(agent: RunningAgent, side: int, via: str, repeats: int) -> dict[str, float]:
    """p50/p99 of DetectAnomalies (with its mask) for a side×side image sent as bytes or through shared memory,
    and of the agent's overhead: the client-observed latency minus the inference time the agent reports."""
    import grpc

    pb = agent.pb
    image = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    segments: list[shared_memory.SharedMemory] = []
    if via == "bytes":
        request = pb.DetectAnomaliesRequest(
            model_component=agent.component, bitmap=pb.Bitmap(width=side, height=side, byte_data=image.tobytes())
        )
    else:
        source, mask = _segment(image.nbytes), _segment(image.nbytes)
        segments += [source, mask]
        source.buf[: image.nbytes] = image.tobytes()
        request = pb.DetectAnomaliesRequest(
            model_component=agent.component,
            bitmap=pb.Bitmap(
                width=side,
                height=side,
                shared_memory_handle=pb.SharedMemoryHandle(name=source.name, size=image.nbytes, offset=0),
            ),
            anomaly_mask_params=pb.AnomalyMaskParams(
                shared_memory_handle=pb.SharedMemoryHandle(name=mask.name, size=image.nbytes, offset=0)
            ),
        )
    totals, overheads = [], []
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    try:
        with grpc.insecure_channel(agent.address, options=options) as channel:
            stub = agent.pb_grpc.EdgeAgentStub(channel)
            stub.DetectAnomalies(request)  # warm-up
            for _ in range(repeats):
                started = time.perf_counter()
                _, call = stub.DetectAnomalies.with_call(request)
                total = (time.perf_counter() - started) * 1000
                inference = float(dict(call.trailing_metadata())[TRAILER])
                totals.append(total)
                overheads.append(total - inference)
    finally:
        for segment in segments:
            segment.close()
            segment.unlink()
    return {
        "p50_ms": statistics.median(totals),
        "p99_ms": percentile(totals, 0.99),
        "overhead_p50_ms": statistics.median(overheads),
        "overhead_p99_ms": percentile(overheads, 0.99),
        "requests": repeats,
    }


def throughput(agent: RunningAgent, clients: int, requests_per_client: int, side: int = 224) -> dict[str, float]:
    """Requests per second with `clients` concurrent callers (one channel each), 224² images as bytes."""
    import grpc

    pb = agent.pb
    image = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    request = pb.DetectAnomaliesRequest(
        model_component=agent.component, bitmap=pb.Bitmap(width=side, height=side, byte_data=image.tobytes())
    )
    latencies: list[float] = []
    ready = threading.Barrier(clients + 1)

    def client() -> None:
        with grpc.insecure_channel(agent.address) as channel:
            stub = agent.pb_grpc.EdgeAgentStub(channel)
            stub.DetectAnomalies(request)
            ready.wait()
            for _ in range(requests_per_client):
                started = time.perf_counter()
                stub.DetectAnomalies(request)
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
    }


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    """The process's resident set now (VmRSS)."""
    return _status_mib(pid, "VmRSS")


def agent_figures(bundle: Path, pb: Any, pb_grpc: Any, repeats: int, sides: tuple[int, ...], clients: tuple[int, ...]):
    """Every agent figure of the benchmark from one agent process. Peak RSS is read twice: after the 224²
    throughput runs (the steady state of a line camera) and after the large images (their buffers included)."""
    with running_agent(bundle, pb, pb_grpc) as agent:
        loads = [throughput(agent, n, max(4, repeats // n)) for n in clients]
        steady_rss = peak_rss_mib(agent.pid)
        latency = {
            f"{side}x{side} {via}": detect_latency(agent, side, via, repeats if side < 4096 else max(3, repeats // 4))
            for side in sides
            for via in ("bytes", "shm")
        }
        return {
            "detect": latency,
            "throughput": loads,
            "peak_rss_mib_224": steady_rss,
            "peak_rss_mib": peak_rss_mib(agent.pid),
        }
