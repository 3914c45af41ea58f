#!/usr/bin/env bash
# End-to-end demo on the bundled reference model: build it, register it, package it for this
# machine (Linux x86_64 CPU), export the greengrass-cli layout, and score sample images with the
# compiled module. Everything lands in ./demo-output (data directory included), so it is repeatable.
set -euo pipefail
out="${1:-demo-output}"
rm -rf "$out"
export LOOKOUT_EDGE_DATA_DIR="$out/data"
run() { echo "+ $*" >&2; "$@"; }

run lookout-edge build-reference-model --output "$out/reference"
run lookout-edge create-project --project-name circuit-boards --output table
run lookout-edge create-model --project-name circuit-boards --model-file "$out/reference/model.onnx" \
    --model-metadata "$out/reference/metadata.json" --output table
run lookout-edge start-model-packaging-job --project-name circuit-boards --model-version 1 \
    --job-name circuit-boards-x86 \
    --configuration '{"Greengrass": {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
                      "CompilerOptions": "{\"mcpu\": \"core-avx2\"}",
                      "S3OutputLocation": {"Bucket": "my-bucket", "Prefix": "models/"},
                      "ComponentName": "com.example.CircuitBoards"}}' --wait
run lookout-edge describe-model-packaging-job --project-name circuit-boards --job-name circuit-boards-x86 \
    --output yaml
run lookout-edge export-component --component-name com.example.CircuitBoards --component-version 1.0.0 \
    --output "$out/gg"
find "$out/gg" -type f | sort
run lookout-edge score --bundle "$out/gg/artifacts/com.example.CircuitBoards/1.0.0/model.zip" \
    "$out/reference/samples"
# Serve the packaged component with the Edge Agent and call it the way factory-floor clients do.
sock_dir="$(mktemp -d)"
agent=(lookout-edge-agent --socket "unix://$sock_dir/agent.sock" --registry-dir "$out/agent-registry"
       --models-dir "$out/gg/artifacts/com.example.CircuitBoards/1.0.0" --work-dir "$out/agent-work")
echo "+ ${agent[*]} &" >&2
"${agent[@]}" &
agent_pid=$!
trap 'kill -TERM $agent_pid 2>/dev/null; wait $agent_pid; rm -rf "$sock_dir"' EXIT
# The client stubs go beside the example client, exactly as README's "Your first client" says.
run python3 -m grpc_tools.protoc --proto_path=protos --python_out=examples --grpc_python_out=examples edge-agent.proto
for _ in $(seq 60); do [ -S "$sock_dir/agent.sock" ] && break; sleep 0.5; done
run python3 examples/detect_anomalies.py --socket "unix://$sock_dir/agent.sock" \
    --model-component com.example.CircuitBoards --stop "$out"/reference/samples
echo "Deploy with: sudo greengrass-cli deployment create --recipeDir $out/gg/recipes" \
     "--artifactDir $out/gg/artifacts --merge com.example.CircuitBoards=1.0.0"
