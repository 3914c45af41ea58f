"""Soak benchmark of the Edge Agent: N clients call DetectAnomalies for M minutes while the model is stopped and
started and its version swapped underneath, as a line's operators and deployments do. Prints latency
percentiles of the answered calls, every status code seen, and the agent's RSS over time.

    python benchmarks/soak.py v1/model.zip v2/model.zip --clients 8 --minutes 5

The two bundles are two versions of one component (two packaging jobs of the same model); with one bundle
there are stops and starts but no swaps. Stops make calls fail with FAILED_PRECONDITION (the model is not
RUNNING) until it runs again; a swap must fail none.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.agent_load import percentile, rss_mib  # noqa: E402
from edge_agent.components.deployments import Registration  # noqa: E402
from edge_agent.components.registrations import write_registration  # noqa: E402


def _unpack(bundle: Path, dest: Path) -> Registration:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    return Registration(manifest["component"]["name"], manifest["component"]["version"], manifest["model"]["arn"], dest)


def soak(bundles: list[Path], clients: int, minutes: float, event_every: float) -> dict:
    import grpc

    from tests.agent_harness import generate_client_stubs

    work = Path(tempfile.mkdtemp(prefix="lookout-edge-soak-"))
    pb, pb_grpc = generate_client_stubs(work / "stubs")
    versions = [_unpack(bundle, work / f"v{i}") for i, bundle in enumerate(bundles)]
    registry = work / "registry"
    write_registration(registry, versions[0])
    address = f"unix://{work}/agent.sock"
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "serve", "--socket", address, "--registry-dir", str(registry),
         "--log-level", "WARNING"],
        cwd=REPO,
    )  # fmt: skip
    name = versions[0].component_name
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    rss: list[tuple[float, float]] = []
    events: list[str] = []
    stop = threading.Event()
    try:
        while not (work / "agent.sock").exists():
            if agent.poll() is not None:
                raise RuntimeError("the agent did not start")
            time.sleep(0.1)
        channel = grpc.insecure_channel(address)
        stub = pb_grpc.EdgeAgentStub(channel)

        def wait_running() -> None:
            while (
                stub.DescribeModel(pb.DescribeModelRequest(model_component=name)).model_description.status != pb.RUNNING
            ):
                time.sleep(0.1)

        stub.StartModel(pb.StartModelRequest(model_component=name))
        wait_running()
        image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        request = pb.DetectAnomaliesRequest(
            model_component=name, bitmap=pb.Bitmap(width=224, height=224, byte_data=image.tobytes())
        )

        def client() -> None:
            with grpc.insecure_channel(address) as own:
                caller = pb_grpc.EdgeAgentStub(own)
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        caller.DetectAnomalies(request, timeout=60)
                        latencies.append((time.perf_counter() - started) * 1000)
                        codes["OK"] += 1
                    except grpc.RpcError as error:
                        codes[error.code().name] += 1
                        time.sleep(0.05)

        def operator() -> None:
            turn = 0
            while not stop.wait(event_every):
                turn += 1
                if len(versions) > 1 and turn % 2 == 0:
                    version = versions[(turn // 2) % len(versions)]
                    write_registration(registry, version)
                    events.append(f"{time.strftime('%H:%M:%S')} swap to {version.component_version}")
                else:
                    stub.StopModel(pb.StopModelRequest(model_component=name))
                    stub.StartModel(pb.StartModelRequest(model_component=name))
                    wait_running()
                    events.append(f"{time.strftime('%H:%M:%S')} stop and start")

        threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=operator)]
        started = time.time()
        for thread in threads:
            thread.start()
        while time.time() - started < minutes * 60:
            rss.append((round(time.time() - started), round(rss_mib(agent.pid), 1)))
            time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join()
        rss.append((round(time.time() - started), round(rss_mib(agent.pid), 1)))
        channel.close()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "clients": clients,
        "minutes": minutes,
        "answered": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "codes": dict(codes),
        "events": events,
        "rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", type=Path, help="model.zip of one component (two versions: swaps)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--event-every", type=float, default=20.0, help="seconds between stops/starts and swaps")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = soak(args.bundles, args.clients, args.minutes, args.event_every)
    print(f"{figures['clients']} clients for {figures['minutes']:g} min: {figures['answered']} answered, "
          f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms")  # fmt: skip
    print(f"status codes: {figures['codes']}")
    shown = ", ".join(figures["events"][:6]) + (" …" if len(figures["events"]) > 6 else "")
    print(f"events: {len(figures['events'])} ({shown})")
    samples = figures["rss_mib"]
    print(f"RSS (MiB) at seconds: {', '.join(f'{t}s {m:.0f}' for t, m in samples[:: max(1, len(samples) // 12)])}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
