#!/usr/bin/env bash
# Regenerates the agent's gRPC modules from protos/edge-agent.proto into edge_agent/generated/ (or into
# the folder given as $1). The generated files are committed; tests/edge_agent/test_agent_protocol.py fails when
# they drift from the proto.
# Clients generate their own stubs from protos/edge-agent.proto (see README).
set -euo pipefail
target="$(realpath "${1:-$(dirname "$0")/../edge_agent/generated}")"
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
python3 -m grpc_tools.protoc -Iedge_agent/generated=protos \
    --python_out="$out" --grpc_python_out="$out" edge_agent/generated/edge-agent.proto
cp "$out"/edge_agent/generated/edge_agent_pb2.py "$out"/edge_agent/generated/edge_agent_pb2_grpc.py "$target"/
