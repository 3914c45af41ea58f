"""The TensorRT-ready ONNX and its build profile, shipped with NVIDIA targets.

TensorRT engines only run on the GPU and TensorRT build that made them, so the agent builds the engine on
the device from this ONNX and profile. The ONNX is made easy for TensorRT's parser: static shapes
everywhere, constants folded (ONNX Runtime's basic level, which only writes standard ONNX operators), an
opset and IR version the requested TensorRT parses; it is checked with `onnx.checker` and against ONNX
Runtime before it is shipped.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import onnx
from onnx import shape_inference, version_converter

from edge_agent.bundle.model_spec import ModelSpec

TENSORRT_ONNX = "tensorrt/model.onnx"
TENSORRT_PROFILE = "tensorrt/profile.json"
# The newest ONNX opset and IR version each TensorRT release's ONNX parser reads (TensorRT release notes).
PARSER_LIMITS: list[tuple[tuple[int, int], int, int]] = [
    ((8, 0), 13, 7),
    ((8, 4), 17, 8),
    ((10, 0), 20, 9),
]
WORKSPACE_MIB = 1024
STANDARD_DOMAINS = ("", "ai.onnx")


class TensorRTExportError(Exception):
    """The model could not be made into an ONNX the requested TensorRT parses."""


def parser_limits(trt_ver: str) -> tuple[int, int]:
    """(max opset, max IR version) for TensorRT `trt_ver`."""
    version = tuple(int(p) for p in trt_ver.split(".")[:2])
    opset, ir = PARSER_LIMITS[0][1:]
    for since, max_opset, max_ir in PARSER_LIMITS:
        if version >= since:
            opset, ir = max_opset, max_ir
    return opset, ir


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(out)
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        folded = onnx.load(str(out))
    used = {n.domain for n in folded.graph.node} | {""}
    kept = [o for o in folded.opset_import if o.domain in used]
    del folded.opset_import[:]
    folded.opset_import.extend(kept)
    return folded


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS)


def prepare_for_tensorrt(model: onnx.ModelProto, trt_ver: str) -> onnx.ModelProto:
    """A checked, static-shaped, constant-folded copy of the (shape-pinned) `model` for TensorRT `trt_ver`."""
    max_opset, max_ir = parser_limits(trt_ver)
    if _default_opset(model) > max_opset:
        try:
            model = version_converter.convert_version(model, max_opset)
        except Exception as exc:
            raise TensorRTExportError(
                f"the model uses ONNX opset {_default_opset(model)} and TensorRT {trt_ver} parses up to opset "
                f"{max_opset}; converting failed ({exc}). Export the model with opset {max_opset} or lower."
            ) from exc
    model = _fold_constants(model)
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in STANDARD_DOMAINS})
    if foreign:
        raise TensorRTExportError(f"operators from non-standard domains {foreign} cannot be parsed by TensorRT")
    model.ir_version = min(model.ir_version, max_ir)
    model = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            raise TensorRTExportError(f"'{value.name}' has a dynamic shape after pinning; TensorRT needs it static")
    onnx.checker.check_model(model, full_check=True)
    return model


def build_profile(
    model: onnx.ModelProto, spec: ModelSpec, trt_ver: str, gpu_code: str, precision: str = "fp32"
) -> dict[str, Any]:
    """What the agent's engine builder needs; its hash (with the GPU and TensorRT version) keys the engine cache."""
    data = model.SerializeToString()
    profile = {
        "onnx": TENSORRT_ONNX,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "trt_ver": trt_ver,
        "gpu_code": gpu_code,
        "precision": precision,
        "workspace_mib": WORKSPACE_MIB,
        "input": {"name": spec.input_name, "shape": [1, 3, *spec.input_size], "dtype": "float32"},
        "opset": _default_opset(model),
    }
    return profile


def write_tensorrt_files(bundle_dir: Path, model: onnx.ModelProto, profile: dict[str, Any]) -> None:

    (bundle_dir / TENSORRT_ONNX).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(bundle_dir / TENSORRT_ONNX))
    (bundle_dir / TENSORRT_PROFILE).write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
