"""The TensorRT runner: a process that builds, caches and runs one TensorRT engine for the agent.

It runs under whichever Python has TensorRT's bindings, which on JetPack 5 is the system Python 3.8 while the
agent needs 3.10 or newer, so this file stands alone: Python 3.8 syntax, the standard library, numpy, and
TensorRT with the CUDA runtime (through ctypes) imported only by its backend. The agent starts it as
`python3.8 tensorrt_runner.py` (edge_agent/engines/tensorrt_client.py) and speaks to it in JSON lines over its stdin
and stdout; tensors travel in a POSIX shared-memory segment the agent creates:

    → {"op": "hello"}         ← {"ok": true, "backend", "version", "gpu", "compute_capability", "python"}
    → {"op": "load", "onnx", "profile", "cache_dir", "precision"}
                              ← {"progress": "..."} …, then
                                {"ok": true, "inputs": [io], "outputs": [io], "engine", "built", "precision"}
    → {"op": "run", "segment": "/name"}   ← {"ok": true}   (input at offset 0, then each output in order)
    any failure                                ← {"ok": false, "error": "..."}

`io` is {"name", "shape", "dtype"}. `python3 tensorrt_runner.py --probe` prints the hello answer and exits: the
agent's check for TensorRT. The engine cache key is the ONNX file's sha256, the TensorRT version, the GPU's
name and compute capability and the precision; engines are written to a temporary name and renamed, so a crash
never leaves half an engine. LOOKOUT_EDGE_TENSORRT_BACKEND=onnxruntime swaps TensorRT for ONNX Runtime on the
CPU, with the same protocol, cache and shared memory: the tests use it on machines without TensorRT.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import re
import sys
import time
from multiprocessing import resource_tracker, shared_memory

import numpy as np

BACKEND_ENV = "LOOKOUT_EDGE_TENSORRT_BACKEND"
CUDA_MEMCPY_HOST_TO_DEVICE, CUDA_MEMCPY_DEVICE_TO_HOST = 1, 2


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _slug(text):
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


class _Cuda:
    """The few CUDA runtime calls the TensorRT backend needs, through ctypes (no pycuda on JetPack)."""

    def __init__(self):
        for name in ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.13"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("the CUDA runtime library (libcudart.so) was not found")
        self.stream = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    def check(self, code, call):
        if code != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{call} failed: {self.lib.cudaGetErrorString(code).decode()}")

    def malloc(self, size):
        pointer = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(size)), "cudaMalloc")
        return pointer

    def copy(self, destination, source, size, kind):
        self.check(
            self.lib.cudaMemcpyAsync(destination, source, ctypes.c_size_t(size), kind, self.stream), "cudaMemcpyAsync"
        )

    def synchronize(self):
        self.check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class TensorRTBackend:
    """Builds an engine from the bundle's ONNX with this device's TensorRT and runs it on the GPU."""

    def __init__(self):
        import tensorrt

        self.trt = tensorrt
        self.logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self.cuda = _Cuda()
        properties = ctypes.create_string_buffer(4096)  # cudaDeviceProp: name first, then much more
        get_properties = getattr(self.cuda.lib, "cudaGetDeviceProperties_v2", None)  # CUDA 12+; 11 has the plain one
        get_properties = get_properties or self.cuda.lib.cudaGetDeviceProperties
        self.cuda.check(get_properties(properties, 0), "cudaGetDeviceProperties")
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.cuda.check(self.cuda.lib.cudaDeviceGetAttribute(ctypes.byref(major), 75, 0), "cudaDeviceGetAttribute")
        self.cuda.check(self.cuda.lib.cudaDeviceGetAttribute(ctypes.byref(minor), 76, 0), "cudaDeviceGetAttribute")
        self.gpu = properties.value.decode(errors="replace")
        self.compute_capability = f"{major.value}.{minor.value}"
        self.version = tensorrt.__version__

    def build(self, onnx_path, profile, precision, destination):
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(onnx_path):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError("TensorRT could not parse the ONNX: " + "; ".join(errors[:5]))
        config = builder.create_builder_config()
        workspace = int(profile.get("workspace_mib", 1024)) << 20
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        else:
            config.max_workspace_size = workspace
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT could not build an engine for this network (see the runner's log)")
        with open(destination, "wb") as f:
            f.write(bytes(serialized))

    def load(self, engine_path):
        trt = self.trt
        with open(engine_path, "rb") as f:
            self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError("TensorRT could not read the cached engine " + engine_path)
        self.context = self.engine.create_execution_context()
        self.tensors = []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = [int(d) for d in self.engine.get_tensor_shape(name)]
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name
            pointer = self.cuda.malloc(int(np.prod(shape)) * np.dtype(dtype).itemsize)
            self.context.set_tensor_address(name, pointer.value)
            self.tensors.append({"name": name, "shape": shape, "dtype": dtype, "input": is_input, "pointer": pointer})
        return _io(self.tensors)

    def run(self, buffers):
        for tensor, buffer in zip(self.tensors, buffers, strict=False):
            if tensor["input"]:
                self.cuda.copy(tensor["pointer"], buffer.ctypes.data, buffer.nbytes, CUDA_MEMCPY_HOST_TO_DEVICE)
        if not self.context.execute_async_v3(self.cuda.stream.value):
            raise RuntimeError("TensorRT failed to run the engine")
        for tensor, buffer in zip(self.tensors, buffers, strict=False):
            if not tensor["input"]:
                self.cuda.copy(buffer.ctypes.data, tensor["pointer"], buffer.nbytes, CUDA_MEMCPY_DEVICE_TO_HOST)
        self.cuda.synchronize()


class OnnxRuntimeBackend:
    """Stands in for TensorRT where it is absent (tests): the 'engine' is the ONNX itself, run by ONNX Runtime."""

    def __init__(self):
        import onnxruntime

        self.ort = onnxruntime
        self.version = "onnxruntime-" + onnxruntime.__version__
        self.gpu = "cpu"
        self.compute_capability = "0.0"

    def build(self, onnx_path, profile, precision, destination):
        self.ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])  # refuses what it cannot run
        with open(onnx_path, "rb") as source, open(destination, "wb") as f:
            f.write(source.read())

    def load(self, engine_path):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = self.ort.InferenceSession(engine_path, options, providers=["CPUExecutionProvider"])
        self.tensors = [
            {"name": v.name, "shape": list(v.shape), "dtype": "float32", "input": True}
            for v in self.session.get_inputs()
        ]
        self.tensors += [
            {"name": v.name, "shape": list(v.shape), "dtype": _ort_dtype(v.type), "input": False}
            for v in self.session.get_outputs()
        ]
        return _io(self.tensors)

    def run(self, buffers):
        feeds = {t["name"]: b for t, b in zip(self.tensors, buffers, strict=False) if t["input"]}
        names = [t["name"] for t in self.tensors if not t["input"]]
        outputs = self.session.run(names, feeds)
        for buffer, value in zip(
            [b for t, b in zip(self.tensors, buffers, strict=False) if not t["input"]], outputs, strict=False
        ):
            buffer[...] = value


def _ort_dtype(type_text):
    return {"tensor(float)": "float32", "tensor(bool)": "bool", "tensor(int64)": "int64"}.get(type_text, "float32")


def _io(tensors):
    return {
        "inputs": [{k: t[k] for k in ("name", "shape", "dtype")} for t in tensors if t["input"]],
        "outputs": [{k: t[k] for k in ("name", "shape", "dtype")} for t in tensors if not t["input"]],
    }


def _backend():
    if os.environ.get(BACKEND_ENV) == "onnxruntime":
        return OnnxRuntimeBackend()
    return TensorRTBackend()


def _hello(backend):
    return {
        "ok": True,
        "backend": type(backend).__name__,
        "version": backend.version,
        "gpu": backend.gpu,
        "compute_capability": backend.compute_capability,
        "python": platform.python_version(),
    }


class Runner:
    def __init__(self, backend, replies):
        self.backend = backend
        self.replies = replies
        self.tensors = None
        self.segments = {}

    def send(self, message):
        self.replies.write(json.dumps(message) + "\n")
        self.replies.flush()

    def load(self, request):
        with open(request["profile"]) as f:
            profile = json.load(f)
        precision = request.get("precision") or profile.get("precision", "fp32")
        key = "-".join(
            [
                _sha256(request["onnx"])[:24],
                "trt" + _slug(self.backend.version),
                _slug(self.backend.gpu),
                "sm" + self.backend.compute_capability.replace(".", ""),
                precision,
            ]
        )
        engine_path = os.path.join(request["cache_dir"], key + ".engine")
        built = not os.path.isfile(engine_path)
        if built:
            os.makedirs(request["cache_dir"], exist_ok=True)
            what = f"building the TensorRT {self.backend.version} engine ({precision}); this takes minutes on a Jetson"
            self.send({"progress": what})
            started = time.monotonic()
            partial = f"{engine_path}.{os.getpid()}.partial"
            try:
                self.backend.build(request["onnx"], profile, precision, partial)
                os.replace(partial, engine_path)
            finally:
                if os.path.exists(partial):
                    os.unlink(partial)
            self.send({"progress": f"built the engine in {time.monotonic() - started:.0f} s"})
        io = self.backend.load(engine_path)
        self.tensors = io["inputs"] + io["outputs"]
        return dict(ok=True, engine=engine_path, built=built, precision=precision, **io)

    def _segment(self, name):
        segment = self.segments.get(name)
        if segment is None:
            segment = shared_memory.SharedMemory(name=name.lstrip("/"))
            # The agent owns the segment: this process must not unlink it when it exits.
            resource_tracker.unregister(segment._name, "shared_memory")
            self.segments[name] = segment
        return segment

    def run(self, request):
        if self.tensors is None:
            raise RuntimeError("run before load")
        segment = self._segment(request["segment"])
        buffers, offset = [], 0
        for tensor in self.tensors:
            dtype = np.dtype(tensor["dtype"])
            count = int(np.prod(tensor["shape"]))
            buffers.append(np.ndarray(tensor["shape"], dtype, buffer=segment.buf, offset=offset))
            offset += count * dtype.itemsize
        self.backend.run(buffers)
        del buffers
        return {"ok": True}

    def serve(self, requests):
        for line in requests:
            try:
                request = json.loads(line)
                if request["op"] == "hello":
                    reply = _hello(self.backend)
                elif request["op"] == "load":
                    reply = self.load(request)
                elif request["op"] == "run":
                    reply = self.run(request)
                else:
                    reply = {"ok": False, "error": "unknown op " + repr(request["op"])}
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.send(reply)


def main():
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything else printed (TensorRT's own messages) must not reach the protocol
    try:
        backend = _backend()
    except Exception as exc:
        replies.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        replies.flush()
        return 1
    if "--probe" in sys.argv[1:]:
        replies.write(json.dumps(_hello(backend)) + "\n")
        replies.flush()
        return 0
    Runner(backend, replies).serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
