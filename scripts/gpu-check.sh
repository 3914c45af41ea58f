#!/usr/bin/env bash
# The NVIDIA GPU check, in two halves: `prepare` runs here (the build machine), `device` on a machine with an
# NVIDIA GPU and a CUDA 13 driver that has Python ≥ 3.10 with numpy, OpenCV and ONNX Runtime but no TVM.
#
#   scripts/gpu-check.sh prepare [GPU_CODE]   # default sm_90 (H100/H200): package the reference model for it
#   scripts/gpu-check.sh device               # on the GPU machine, in a copy of this repository with .gpu-check/
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
set -euo pipefail
cd "$(dirname "$0")/.."
here="${GPU_CHECK_DIR:-$PWD/.gpu-check}"
device_python="${GPU_CHECK_PYTHON_VERSION:-3.12}"

prepare() {
    local gpu_code="${1:-sm_90}" work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    rm -rf "$here" && mkdir -p "$here"
    export LOOKOUT_EDGE_DATA_DIR="$work/data"
    lookout-edge build-reference-model --output "$work/reference" >/dev/null
    lookout-edge create-project --project-name gpu-check >/dev/null
    lookout-edge create-model --project-name gpu-check --model-file "$work/reference/model.onnx" \
        --model-metadata "$work/reference/metadata.json" >/dev/null
    local configuration
    configuration="$(python3 -c 'import json, sys
options = {"gpu-code": sys.argv[1], "trt-ver": "10.13.3", "cuda-ver": "13.0"}
print(json.dumps({"Greengrass": {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64", "Accelerator": "NVIDIA"},
    "CompilerOptions": json.dumps(options), "S3OutputLocation": {"Bucket": "gpu-check"},
    "ComponentName": "com.example.GpuCheck"}}))' "$gpu_code")"
    lookout-edge start-model-packaging-job --project-name gpu-check --model-version 1 --job-name "${gpu_code/_/-}" \
        --configuration "$configuration" --wait >&2
    lookout-edge export-component --component-name com.example.GpuCheck --component-version 1.0.0 \
        --output "$work/gg" >/dev/null
    mkdir "$work/bundle"
    unzip -q "$work/gg/artifacts/com.example.GpuCheck/1.0.0/model.zip" -d "$work/bundle"
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
    local tvm_dir
    tvm_dir="$(python3 -c 'import os, tvm; print(os.path.dirname(tvm.__file__))')"
    tar -C "$(dirname "$tvm_dir")" -czf "$here/tvm-runtime.tar.gz" --exclude='__pycache__' \
        --exclude='tvm/lib/libtvm_compiler.so' --exclude='tvm/3rdparty' --exclude='tvm/src' --exclude='tvm/web' \
        --exclude='tvm/include' --exclude='tvm/lib64' --exclude='tvm/cmake' tvm
    local ffi_version
    ffi_version="$(python3 -c 'import importlib.metadata as m; print(m.version("apache-tvm-ffi"))')"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$device_python" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$here" "apache-tvm-ffi==$ffi_version"
    du -ch "$here"/* | tail -1 >&2
    echo "Ready: run 'scripts/gpu-check.sh device' on the GPU machine with .gpu-check carried." >&2
}

device() {
    local out="${OUT:-$PWD/gpu-check-out}" site=/tmp/gpu-check-site bundle=/tmp/gpu-check-bundle
    mkdir -p "$out" && rm -rf "$site" "$bundle" && mkdir -p "$site" "$bundle"
    python3 -m zipfile -e "$here"/apache_tvm_ffi-*.whl "$site"
    tar -C "$site" -xzf "$here/tvm-runtime.tar.gz"
    tar -C "$bundle" -xf "$here/bundle.tar" && gunzip "$bundle/model.so.gz"
    # libcudart.so.13, which the TVM wheel's CUDA runtime links: a CUDA toolkit's, or the nvidia-cuda-runtime wheel's.
    local cudart
    cudart="$(python3 - <<'EOF'
import glob, os
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
try:
    import nvidia.cuda_runtime as rt
    roots += [os.path.join(p, "lib") for p in rt.__path__]
except ImportError:
    pass
try:
    import nvidia
    roots += [os.path.join(p, "cu13", "lib") for p in nvidia.__path__]
except ImportError:
    pass
print(next((os.path.dirname(f) for r in roots for f in glob.glob(os.path.join(r, "libcudart.so.13*"))), ""))
EOF
)"
    export PYTHONPATH="$site:$PWD" LD_LIBRARY_PATH="${cudart:+$cudart:}${LD_LIBRARY_PATH:-}" PYTHONUNBUFFERED=1
    echo "libcudart.so.13 from: ${cudart:-not found}" | tee "$out/environment.txt"
    { nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv || true; } \
        | tee -a "$out/environment.txt"
    python3 -m edge_agent.cli doctor --bundle "$bundle" 2>&1 | tee "$out/doctor.txt" || true
    python3 benchmarks/gpu_latency.py --bundle "$bundle" --json "$out/gpu_latency.json" 2>&1 \
        | tee "$out/gpu_latency.txt"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    device) device ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
