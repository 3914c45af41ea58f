"""The benchmark's agent measurements run against a real agent: latency by transport with the agent's own
overhead (from its inference-time trailer), throughput, peak RSS."""

from __future__ import annotations

from pathlib import Path

from benchmarks.agent_load import detect_latency, peak_rss_mib, running_agent, throughput
from tests.conftest import BOARDS


def test_agent_figures_from_a_running_agent(packaged, client_stubs, tmp_path: Path) -> None:
    pb, pb_grpc = client_stubs
    with running_agent(packaged[f"{BOARDS}-1.0.0"], pb, pb_grpc) as agent:
        for via in ("bytes", "shm"):
            figures = detect_latency(agent, 256, via, repeats=3)
            assert 0 < figures["overhead_p50_ms"] < figures["p50_ms"] <= figures["p99_ms"], figures
        load = throughput(agent, clients=2, requests_per_client=2)
        assert load["clients"] == 2 and load["requests_per_s"] > 0
        assert peak_rss_mib(agent.pid) > 50
