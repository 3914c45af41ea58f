#!/usr/bin/env bash
# Regenerates the agent's gRPC modules in edge_agent/generated/ from protos/edge-agent.proto.
# The generated files are committed; tests/test_agent_protocol.py fails when they drift from the proto.
# Clients generate their own stubs from protos/edge-agent.proto (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
python3 -m grpc_tools.protoc -Iedge_agent/generated=protos \
    --python_out="$out" --grpc_python_out="$out" edge_agent/generated/edge-agent.proto
cp "$out"/edge_agent/generated/edge_agent_pb2.py "$out"/edge_agent/generated/edge_agent_pb2_grpc.py edge_agent/generated/
