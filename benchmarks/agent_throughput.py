"""Edge Agent throughput and latency over its Unix socket, by worker count (Concurrency).

Starts `lookout-edge-agent` on a packaged bundle once per Concurrency value, drives it with N client
threads (one channel each) sending the same 224×224 RGB image, and prints median/p90 latency and
requests per second; with --onnx, also ONNX Runtime's median latency on the same image in this process.

    python benchmarks/agent_throughput.py --bundle demo-output/gg/artifacts/com.example.CircuitBoards/1.0.0/model.zip \
        --onnx demo-output/reference/model.onnx --concurrency 1 2 --clients 4 --requests 24
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def run_agent(bundle: Path, concurrency: int, clients: int, requests: int, image: np.ndarray, pb, pb_grpc) -> dict:
    import grpc

    work = Path(tempfile.mkdtemp(prefix="lea-bench-", dir="/tmp"))
    (work / "models").mkdir()
    shutil.copy(bundle, work / "models" / "model.zip")
    (work / "config.json").write_text(json.dumps({"Concurrency": concurrency, "MaxQueuedRequests": 1000}))
    address = f"unix://{work}/agent.sock"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "serve",
            "--socket",
            address,
            "--models-dir",
            str(work / "models"),
            "--registry-dir",
            str(work / "registry"),
            "--config",
            str(work / "config.json"),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
    )
    try:
        while not (work / "agent.sock").exists():
            time.sleep(0.1)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.EdgeAgentStub(channel)
            name = stub.ListModels(pb.ListModelsRequest()).models[0].model_component
            stub.StartModel(pb.StartModelRequest(model_component=name))
            while (
                stub.DescribeModel(pb.DescribeModelRequest(model_component=name)).model_description.status != pb.RUNNING
            ):
                time.sleep(0.2)
        request = pb.DetectAnomaliesRequest(
            model_component=name,
            bitmap=pb.Bitmap(width=image.shape[1], height=image.shape[0], byte_data=image.tobytes()),
        )
        latencies: list[float] = []

        def client(count: int) -> None:
            with grpc.insecure_channel(address) as channel:
                stub = pb_grpc.EdgeAgentStub(channel)
                stub.DetectAnomalies(request)  # warm-up, not counted
                warmed.wait()
                for _ in range(count):
                    start = time.perf_counter()
                    stub.DetectAnomalies(request)
                    latencies.append(time.perf_counter() - start)

        warmed = threading.Barrier(clients + 1)
        threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        warmed.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        rss = _rss_mib(agent.pid)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait()
        shutil.rmtree(work, ignore_errors=True)
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(0.9 * (len(latencies) - 1))] * 1000,
        "rps": len(latencies) / elapsed,
        "rss_mib": rss,
    }


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def onnx_runtime_ms(onnx_path: Path, bundle: Path, image: np.ndarray, repeats: int = 10) -> float:
    import onnxruntime as ort

    from edge_agent.preprocess import Preprocessor

    with zipfile.ZipFile(bundle) as zf:
        spec = json.loads(zf.read("manifest.json"))["model"]["spec"]
    tensor = Preprocessor.from_spec(spec)(image)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        session.run(None, {spec["input_name"]: tensor})
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a packaged model.zip")
    parser.add_argument("--onnx", type=Path, help="the source ONNX model, for ONNX Runtime's figure")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24, help="measured requests in total (after warm-up)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.agent_harness import generate_client_stubs

    pb, pb_grpc = generate_client_stubs(Path(tempfile.mkdtemp(prefix="lea-stubs-")))
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    print(f"cpus={os.cpu_count()} clients={args.clients} requests={args.requests}")
    ort_ms = onnx_runtime_ms(args.onnx, args.bundle, image) if args.onnx else None
    if ort_ms is not None:
        print(f"onnxruntime (in process, 1 image at a time): median {ort_ms:.1f} ms")
    for concurrency in args.concurrency:
        r = run_agent(args.bundle, concurrency, args.clients, args.requests, image, pb, pb_grpc)
        ratio = f"  ({r['median_ms'] / ort_ms:.1f}× onnxruntime)" if ort_ms else ""
        print(
            f"agent Concurrency={concurrency}: median {r['median_ms']:.0f} ms, p90 {r['p90_ms']:.0f} ms, "
            f"{r['rps']:.2f} req/s, agent RSS {r['rss_mib']} MiB{ratio}"
        )


if __name__ == "__main__":
    main()
