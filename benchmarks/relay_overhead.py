"""What the peer relay (edge_agent/serving/peer_relay.py) adds to a call: DetectAnomalies through the public socket
against the same call straight to the gRPC server's private socket, in alternating rounds. No model is needed:
the calls end in NOT_FOUND after the request has crossed both sockets and been decoded.

    python benchmarks/relay_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edge_agent.generated import edge_agent_pb2 as pb
from edge_agent.generated import edge_agent_pb2_grpc as pb_grpc
from edge_agent.serving.server import AgentServer


def _median_ms(address: str, request: pb.DetectAnomaliesRequest, calls: int) -> float:
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub, times = pb_grpc.EdgeAgentStub(channel), []
        for _ in range(calls):
            started = time.perf_counter()
            try:
                stub.DetectAnomalies(request)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND, error
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="relay-bench-")
    server = AgentServer(Agent(AgentConfig()), f"unix://{folder}/agent.sock")
    server.start()
    sizes = {"64x64": (64, 500), "1024x1024": (1024, 60)}
    try:
        for round_index in range(args.rounds):
            for name, (side, calls) in sizes.items():
                bitmap = pb.Bitmap(width=side, height=side, byte_data=bytes(side * side * 3))
                request = pb.DetectAnomaliesRequest(model_component="none", bitmap=bitmap)
                direct = _median_ms(f"unix://{server.relay.internal}", request, calls)
                relayed = _median_ms(server.address, request, calls)
                print(
                    f"round {round_index} {name:>9} byte_data: direct {direct:.3f} ms, relayed {relayed:.3f} ms "
                    f"(+{relayed - direct:.3f})"
                )
    finally:
        server.stop(1)


if __name__ == "__main__":
    main()
