"""The bundle contract: what a packaging job promises the agent in `manifest.json`, read and written here only.

The agent owns it (the packager targets it as a compiler targets a runtime ABI). `format_version` says which
edition of the contract a bundle follows; an agent reads its own and older ones and refuses newer ones with a
clear message. Edition 1: bundles from before the field existed (one engine, named by `compiler.library`).
Edition 2: `engines`, best first.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.bundle.model_spec import ModelSpec, ModelSpecError
from edge_agent.defaults import COMPONENT_NAME

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "lookout-edge-bundle/1"  # the family; `format_version` is the edition within it
FORMAT_VERSION = 2
# The engines a bundle may offer, listed in `engines` in the order the agent tries them.
ENGINE_TENSORRT = "tensorrt"  # an engine built on the device by its own TensorRT from tensorrt/model.onnx
ENGINE_TVM_CUDA = "tvm-cuda"  # the TVM module with the shipped cubin
ENGINE_TVM_CPU = "tvm-cpu"  # a TVM module for the host CPU: the whole of a CPU bundle, the fallback of an NVIDIA one
ENGINE_LABELS = {
    ENGINE_TENSORRT: "TensorRT engine",
    ENGINE_TVM_CUDA: "TVM CUDA module",
    ENGINE_TVM_CPU: "TVM CPU module",
}
CPU_FALLBACK_FOLDER = "cpu"  # where an NVIDIA bundle keeps its host CPU module
# Sections written for people and tools (compiler, tuning, parity figures, device requirements): kept as written,
# read by no agent code.
DETAIL_SECTIONS = ("compiler", "requirements", "parity")


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message names the field and the rule."""


@dataclass(frozen=True)
class Golden:
    """The golden input, ONNX Runtime's outputs for it (bundle paths), and how close an engine must come."""

    input: str
    outputs: dict[str, str]
    atol: float
    rtol: float
    max_mask_mismatch: float
    reference: str = "onnxruntime"


@dataclass(frozen=True)
class Manifest:
    """One bundle's manifest. `model` holds arn, project, version and source_sha256, `spec` the model contract
    (input, preprocessing, output roles, threshold, labels; written as `model.spec`); `files` maps each bundle path
    to its sha256 and `sizes` to its length in bytes (bundles from before `sizes` have none)."""

    component_name: str
    component_version: str
    model: dict[str, Any]
    spec: ModelSpec
    outputs: list[str]
    target: dict[str, Any]
    golden: Golden
    engines: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def model_arn(self) -> str:
        return self.model["arn"]

    @property
    def arch(self) -> str:
        return self.target["arch"]

    def foreign_arch(self) -> str | None:
        """Why the bundle cannot run on this machine's architecture, or None when it can."""
        here = platform.machine()
        if self.arch == here:
            return None
        return f"it was compiled for {self.arch} and this device is {here}; deploy the component packaged for {here}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "format_version": self.format_version,
            "component": {"name": self.component_name, "version": self.component_version},
            "model": {**self.model, "spec": self.spec.to_dict()},
            "outputs": self.outputs,
            "target": self.target,
            "golden": {
                "input": self.golden.input,
                "outputs": self.golden.outputs,
                "atol": self.golden.atol,
                "rtol": self.golden.rtol,
                "max_mask_mismatch": self.golden.max_mask_mismatch,
                "reference": self.golden.reference,
            },
            "engines": self.engines,
            **self.details,
            "files": self.files,
            "sizes": self.sizes,
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Validate a parsed manifest.json (ManifestError names what breaks the contract)."""
        if not isinstance(data, dict):
            raise ManifestError(f"must hold a JSON object, not {type(data).__name__}")
        if data.get("format") != BUNDLE_FORMAT:
            raise ManifestError(f"unsupported bundle format {str(data.get('format'))[:80]!r}, expected {BUNDLE_FORMAT}")
        version = data.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ManifestError(f"'format_version' must be a whole number from 1, got {str(version)[:40]!r}")
        if version > FORMAT_VERSION:
            raise ManifestError(
                f"the bundle follows contract edition {version} and this agent reads up to {FORMAT_VERSION}: upgrade "
                "the agent, or re-package the model with the packager matching this agent"
            )
        component, model = _object(data, "component"), _object(data, "model")
        name, component_version = _string(component, "component.name"), _string(component, "component.version")
        if not COMPONENT_NAME.fullmatch(name):
            raise ManifestError(f"component name {name[:80]!r} is not a Greengrass component name")
        _string(model, "model.arn")
        try:
            spec = ModelSpec.from_dict(model.get("spec"))
        except ModelSpecError as exc:
            raise ManifestError(f"'model.spec': {exc}") from None
        target = _object(data, "target")
        _string(target, "target.arch")
        files = data.get("files")
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ManifestError("'files' must map each file's path to its sha256")
        sizes = data.get("sizes", {})
        if not isinstance(sizes, dict) or not all(
            k in files and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in sizes.items()
        ):
            raise ManifestError("'sizes' must map files listed in 'files' to their length in bytes")
        return cls(
            component_name=name,
            component_version=component_version,
            model={key: value for key, value in model.items() if key != "spec"},
            spec=spec,
            outputs=_strings(data.get("outputs"), "outputs"),
            target=target,
            golden=_golden(_object(data, "golden")),
            engines=_engines(data) if version >= 2 else _legacy_engines(data),
            files=files,
            sizes=sizes,
            details={key: data[key] for key in DETAIL_SECTIONS if key in data},
            format_version=version,
        )


def _object(data: dict[str, Any], key: str, where: str | None = None) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ManifestError(f"'{where or key}' must be an object, not {type(value).__name__}")
    return value


def _string(data: dict[str, Any], where: str) -> str:
    value = data.get(where.rsplit(".", 1)[-1])
    if not isinstance(value, str) or not value:
        raise ManifestError(f"'{where}' must be a non-empty string, got {str(value)[:80]!r}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"'{where}' must be a non-empty list of names")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ManifestError(f"'golden.{key}' must be a number ≥ 0, got {str(value)[:40]!r}")
    return float(value)


def _golden(data: dict[str, Any]) -> Golden:
    outputs = data.get("outputs")
    if not isinstance(outputs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in outputs.items()):
        raise ManifestError("'golden.outputs' must map each output name to its file")
    return Golden(
        input=_string(data, "golden.input"),
        outputs=outputs,
        atol=_number(data, "atol"),
        rtol=_number(data, "rtol"),
        max_mask_mismatch=_number(data, "max_mask_mismatch"),
        reference=str(data.get("reference", "onnxruntime")),
    )


def _engines(data: dict[str, Any]) -> list[dict[str, Any]]:
    engines = data.get("engines")
    if not isinstance(engines, list) or not engines or not all(isinstance(e, dict) for e in engines):
        raise ManifestError("'engines' must be a non-empty list of objects")
    return engines


def _legacy_engines(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Edition 1 named one module, `compiler.library`, a CUDA one when it had `device_code`."""
    compiler = data.get("compiler")
    if not isinstance(compiler, dict) or not isinstance(compiler.get("library"), str):
        raise ManifestError("names no engine (neither 'engines' nor 'compiler.library')")
    code = compiler.get("device_code")
    return [{"kind": ENGINE_TVM_CUDA if code else ENGINE_TVM_CPU, "library": compiler["library"], "device_code": code}]


def read_manifest_file(path: Path) -> Manifest:
    """The manifest at `path`, validated; ManifestError names the file and what is wrong."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing: not a model bundle folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    try:
        return Manifest.from_json(data)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def write_manifest_file(path: Path, manifest: Manifest) -> None:
    path.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
