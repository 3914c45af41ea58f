#!/usr/bin/env bash
# The NVIDIA GPU check, in two halves: `prepare` runs here (the build machine), `device` on a machine with an
# NVIDIA GPU and a CUDA 13 driver that has Python ≥ 3.10 with numpy, OpenCV and ONNX Runtime but no TVM.
#
#   scripts/gpu-check.sh prepare [GPU_CODE]   # default sm_90 (H100/H200): package the reference model for it
#   scripts/gpu-check.sh device               # on the GPU machine, in a copy of this repository with .gpu-check/
#   scripts/gpu-check.sh prepare-agent [GPU_CODE] / device-agent   # the whole agent over gRPC, a small model
#
# `prepare` packages the reference model for x86_64 + NVIDIA GPU_CODE (CUDA 13.0: the nvcc on the PATH or the
# `cuda12`-style wheels for other majors), and writes .gpu-check/ (git-ignored): the bundle, and the TVM
# *runtime* pieces (libtvm_runtime + its CUDA and extra libraries, TVM's Python package, and the tvm-ffi wheel
# for the device's Python), never the 260 MB compiler library. The bundle travels without its TensorRT-ready
# ONNX and its CPU module (57 and 60 MB, each a further copy of the weights; no TensorRT on such a machine), so
# that everything fits in 64 MiB: its manifest is rewritten without them, every other file keeps its sha256.
# `device` unpacks them and runs `lookout-edge-agent doctor --bundle` (the agent's own loader, every engine on the
# golden input) and benchmarks/gpu_latency.py (TVM CUDA against ONNX Runtime on the same model), writing
# everything to $OUT (or ./gpu-check-out).
# `prepare-agent` / `device-agent` do the same for the agent process itself: a small convolutional model (the
# reference model's bundle and gRPC's wheels do not fit in 64 MiB together) served by `lookout-edge-agent`,
# called by examples/detect_anomalies.py over the Unix socket (grpcio travels as a wheel: the GPU machine's
# is older than our generated modules need).
set -euo pipefail
cd "$(dirname "$0")/.."
here="${GPU_CHECK_DIR:-$PWD/.gpu-check}"
device_python="${GPU_CHECK_PYTHON_VERSION:-3.12}"

runtime_pieces() {  # the TVM runtime (not the compiler) and the tvm-ffi wheel for the device's Python, into $1
    local tvm_dir ffi_version
    tvm_dir="$(python3 -c 'import os, tvm; print(os.path.dirname(tvm.__file__))')"
    tar -C "$(dirname "$tvm_dir")" -czf "$1/tvm-runtime.tar.gz" --exclude='__pycache__' \
        --exclude='tvm/lib/libtvm_compiler.so' --exclude='tvm/3rdparty' --exclude='tvm/src' --exclude='tvm/web' \
        --exclude='tvm/include' --exclude='tvm/lib64' --exclude='tvm/cmake' tvm
    ffi_version="$(python3 -c 'import importlib.metadata as m; print(m.version("apache-tvm-ffi"))')"
    device_wheels "$1" "apache-tvm-ffi==$ffi_version"
}

device_wheels() {  # wheels of the given requirements for the device's Python, into $1
    local dest="$1"; shift
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$device_python" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dest" "$@"
}

package() {  # package model $2 (metadata $3) for x86_64 + NVIDIA $1 in data dir $4; prints the model.zip path
    local gpu_code="$1" model="$2" metadata="$3" data="$4" configuration
    export LOOKOUT_EDGE_DATA_DIR="$data"
    lookout-edge create-project --project-name gpu-check >/dev/null
    lookout-edge create-model --project-name gpu-check --model-file "$model" --model-metadata "$metadata" >/dev/null
    configuration="$(python3 -c 'import json, sys
options = {"gpu-code": sys.argv[1], "trt-ver": "10.13.3", "cuda-ver": "13.0"}
print(json.dumps({"Greengrass": {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"},
    "CompilerOptions": json.dumps(options), "S3OutputLocation": {"Bucket": "gpu-check"},
    "ComponentName": "com.example.GpuCheck"}}))' "$gpu_code")"
    lookout-edge start-model-packaging-job --project-name gpu-check --model-version 1 --job-name "${gpu_code/_/-}" \
        --configuration "$configuration" --wait >&2
    lookout-edge export-component --component-name com.example.GpuCheck --component-version 1.0.0 \
        --output "$data/gg" >/dev/null
    echo "$data/gg/artifacts/com.example.GpuCheck/1.0.0/model.zip"
}

prepare() {
    local gpu_code="${1:-sm_90}" work archive
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    rm -rf "$here" && mkdir -p "$here"
    lookout-edge build-reference-model --output "$work/reference" >/dev/null
    archive="$(package "$gpu_code" "$work/reference/model.onnx" "$work/reference/metadata.json" "$work/data")"
    mkdir "$work/bundle"
    unzip -q "$archive" -d "$work/bundle"
    python3 - "$work/bundle" <<'EOF'
import json, pathlib, shutil, sys
root = pathlib.Path(sys.argv[1])
manifest = json.loads((root / "manifest.json").read_text())
dropped = ("tensorrt/", "cpu/")
manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(dropped)}
manifest["engines"] = [e for e in manifest["engines"] if e["kind"] == "tvm-cuda"]
manifest["omitted_by_gpu_check"] = "the TensorRT-ready ONNX and the CPU module (transport size)"
(root / "manifest.json").write_text(json.dumps(manifest, indent=2))
for folder in dropped:
    shutil.rmtree(root / folder)
EOF
    gzip -1 "$work/bundle/model.so"
    tar -C "$work/bundle" -cf "$here/bundle.tar" .
    runtime_pieces "$here"
    du -ch "$here"/* | tail -1 >&2
    echo "Ready: run 'scripts/gpu-check.sh device' on the GPU machine with .gpu-check carried." >&2
}

prepare_agent() {
    local gpu_code="${1:-sm_90}" work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    rm -rf "$here" && mkdir -p "$here/models" "$here/stubs"
    python3 -c 'import sys, onnx; from tests.models import classifier; onnx.save(classifier(batch=1, size=224), sys.argv[1])' \
        "$work/model.onnx"
    echo '{}' > "$work/metadata.json"
    cp "$(package "$gpu_code" "$work/model.onnx" "$work/metadata.json" "$work/data")" "$here/models/model.zip"
    runtime_pieces "$here"
    local pins
    pins="$(python3 -c 'import importlib.metadata as m
print(" ".join(f"{n}=={m.version(n)}" for n in ("grpcio", "grpcio-health-checking")))')"
    device_wheels "$here" $pins  # word splitting wanted: two requirements
    python3 -m grpc_tools.protoc --proto_path=protos --python_out="$here/stubs" --grpc_python_out="$here/stubs" \
        edge-agent.proto
    du -ch "$here"/* | tail -1 >&2
    echo "Ready: run 'scripts/gpu-check.sh device-agent' on the GPU machine with .gpu-check carried." >&2
}

runtime_env() {  # unpack the carried runtime into $site; export what the agent needs to find it and libcudart
    rm -rf "$site" && mkdir -p "$site"
    for wheel in "$here"/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
    tar -C "$site" -xzf "$here/tvm-runtime.tar.gz"
    # libcudart.so.13, which the TVM wheel's CUDA runtime links: a CUDA toolkit's, or the nvidia-cuda-runtime wheel's.
    local cudart
    cudart="$(python3 - <<'EOF'
import glob, os
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
try:
    import nvidia
    roots += [os.path.join(p, sub, "lib") for p in nvidia.__path__ for sub in ("cuda_runtime", "cu13")]
except ImportError:
    pass
print(next((os.path.dirname(f) for r in roots for f in glob.glob(os.path.join(r, "libcudart.so.13*"))), ""))
EOF
)"
    export PYTHONPATH="$site:$PWD" LD_LIBRARY_PATH="${cudart:+$cudart:}${LD_LIBRARY_PATH:-}" PYTHONUNBUFFERED=1
    mkdir -p "$out"
    echo "libcudart.so.13 from: ${cudart:-not found}" | tee "$out/environment.txt"
    { nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv || true; } \
        | tee -a "$out/environment.txt"
}

device() {
    local bundle=/tmp/gpu-check-bundle
    runtime_env
    rm -rf "$bundle" && mkdir -p "$bundle"
    tar -C "$bundle" -xf "$here/bundle.tar" && gunzip "$bundle/model.so.gz"
    python3 -m edge_agent.cli doctor --bundle "$bundle" 2>&1 | tee "$out/doctor.txt" || true
    python3 benchmarks/gpu_latency.py --bundle "$bundle" --json "$out/gpu_latency.json" 2>&1 \
        | tee "$out/gpu_latency.txt"
}

device_agent() {
    local work=/tmp/gpu-check-agent socket status agent
    runtime_env
    rm -rf "$work" && mkdir -p "$work/client" "$work/images"
    cp examples/detect_anomalies.py "$here"/stubs/*.py "$work/client/"
    python3 -c 'import sys, cv2, numpy as np
rng = np.random.default_rng(0)
for i in range(4):
    cv2.imwrite(f"{sys.argv[1]}/part_{i}.png", rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))' "$work/images"
    socket="unix://$work/agent.sock"
    python3 -m edge_agent.cli serve --socket "$socket" --models-dir "$here/models" --work-dir "$work/agent" \
        >"$out/agent.log" 2>&1 &
    agent=$!
    for _ in $(seq 120); do [ -S "$work/agent.sock" ] && break; sleep 0.5; done
    status=0
    python3 "$work/client/detect_anomalies.py" --socket "$socket" --model-component com.example.GpuCheck \
        "$work/images" 2>&1 | tee "$out/client.txt" || status=$?
    kill -TERM "$agent"; wait "$agent" || true
    cat "$out/agent.log"
    return "$status"
}

out="${OUT:-$PWD/gpu-check-out}"
site=/tmp/gpu-check-site
case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    prepare-agent) shift; prepare_agent "$@" ;;
    device) device ;;
    device-agent) device_agent ;;
    *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
