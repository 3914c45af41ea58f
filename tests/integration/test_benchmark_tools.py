"""The benchmark's measurements: inference runners each in a child process of their own, and the agent figures
against a real agent (latency by transport with the agent's own overhead from its inference-time trailer,
throughput, peak RSS)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

from benchmarks.agent_load import detect_latency, peak_rss_mib, running_agent, throughput
from benchmarks.isolated_runners import RunnerSpec, interleaved_medians
from compiler.build.parity import golden_input
from compiler.models.contract import inspect_model
from tests.agent_harness import REPO
from tests.conftest import BOARDS


def test_runners_in_child_processes_time_onnx_runtime_and_a_bundle_and_stop(
    packaged, reference_model, reference_metadata
) -> None:
    import onnx

    spec = inspect_model(onnx.load(str(reference_model.model_path)), None, reference_metadata)
    runners = {
        "onnxruntime": RunnerSpec("onnxruntime", reference_model.model_path),
        "bundle": RunnerSpec("bundle", packaged[f"{BOARDS}-1.0.0"]),
    }
    medians = interleaved_medians(runners, golden_input(spec), repeats=3)
    assert set(medians) == set(runners)
    assert all(1 < value < 2000 for value in medians.values()), medians  # a run of the reference model, in ms
    assert not multiprocessing.active_children()


def test_agent_figures_from_a_running_agent(packaged, client_stubs, tmp_path: Path) -> None:
    pb, pb_grpc = client_stubs
    with running_agent(packaged[f"{BOARDS}-1.0.0"], pb, pb_grpc) as agent:
        for via in ("bytes", "shm"):
            figures = detect_latency(agent, 256, via, repeats=3)
            assert 0 < figures["overhead_p50_ms"] < figures["p50_ms"] <= figures["p99_ms"], figures
        load = throughput(agent, clients=2, requests_per_client=2)
        assert load["clients"] == 2 and load["requests_per_s"] > 0
        assert peak_rss_mib(agent.pid) > 50


def test_the_benchmark_times_the_agent_alone_for_a_given_bundle(packaged, tmp_path: Path) -> None:
    """`performance.py --agent-only model.zip`: every agent figure, printed and written as JSON."""
    results = tmp_path / "results.json"
    command = [sys.executable, str(REPO / "benchmarks" / "performance.py"), "--repeats", "2", "--json", str(results)]
    done = subprocess.run(
        [*command, "--agent-only", str(packaged[f"{BOARDS}-1.0.0"])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    agent = json.loads(results.read_text())["agent"]
    assert sorted(agent["detect"]) == sorted(f"{n}x{n} {via}" for n in (224, 1024, 4096) for via in ("bytes", "shm"))
    assert [load["clients"] for load in agent["throughput"]] == [1, 4, 16]
    assert "1024x1024 shm" in done.stdout and "agent peak RSS" in done.stdout
    assert "latency, reference model" not in done.stdout  # nothing packaged or timed besides the agent


def _minor_faults(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])  # minflt, the 10th field of proc(5), counted after the command name


def test_agent_runs_on_the_tvm_runtime_alone_and_reuses_request_buffers(packaged, client_stubs) -> None:
    """The serving process maps libtvm_runtime but not the compiler library, and its malloc settings keep a
    1024² request's buffers for the next one: without them each request faults in ~5,800 fresh pages."""
    pb, pb_grpc = client_stubs
    with running_agent(packaged[f"{BOARDS}-1.0.0"], pb, pb_grpc) as agent:
        libraries = Path(f"/proc/{agent.pid}/maps").read_text()
        assert "libtvm_runtime.so" in libraries and "libtvm_compiler.so" not in libraries
        detect_latency(agent, 1024, "bytes", repeats=2)
        before = _minor_faults(agent.pid)
        detect_latency(agent, 1024, "bytes", repeats=5)  # 6 calls with its warm-up
        per_request = (_minor_faults(agent.pid) - before) / 6
        assert per_request < 1500, f"{per_request:.0f} page faults per 1024² request"
