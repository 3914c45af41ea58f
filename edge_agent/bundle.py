"""Model bundles: the folder (or zip) a packaging job writes, its manifest, and its verification."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.cuda_device_code import ShippedCubin

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "lookout-edge-bundle/1"

# The engines a bundle may offer, listed in its manifest's `engines` in the order the agent tries them.
ENGINE_TENSORRT = "tensorrt"  # an engine built on the device by its own TensorRT from tensorrt/model.onnx
ENGINE_TVM_CUDA = "tvm-cuda"  # the TVM module with the shipped cubin
ENGINE_TVM_CPU = "tvm-cpu"  # a TVM module for the host CPU: the whole of a CPU bundle, the fallback of an NVIDIA one
ENGINE_LABELS = {
    ENGINE_TENSORRT: "TensorRT engine",
    ENGINE_TVM_CUDA: "TVM CUDA module",
    ENGINE_TVM_CPU: "TVM CPU module",
}
CPU_FALLBACK_FOLDER = "cpu"  # where an NVIDIA bundle keeps its host CPU module


# Bounds on what a bundle zip may unpack to, checked from its directory before anything is written. Weights
# barely compress (a 87 MB library zips to ~80 MB), so a large archive expanding 20-fold is not a model.
MAX_ENTRIES = 1000
MAX_UNPACKED_BYTES = 8 << 30
SMALL_BUNDLE_BYTES = 64 << 20  # below this any expansion is fine (golden arrays of zeros compress well)
MAX_EXPANSION = 20


class BundleError(Exception):
    """A bundle that is missing, malformed, or whose files do not match the manifest."""


def sha256_file(path: Path) -> str:
    """The hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineSpec:
    """One entry of the manifest's `engines`: what the agent needs to open that engine, paths inside the bundle."""

    kind: str
    library: Path | None = None  # TVM engines
    cubin: ShippedCubin | None = None  # tvm-cuda
    onnx: Path | None = None  # tensorrt
    profile: Path | None = None  # tensorrt
    trt_ver: str | None = None  # tensorrt: the version the ONNX was prepared for

    @property
    def label(self) -> str:
        return ENGINE_LABELS[self.kind]


def _engine_spec(root: Path, entry: Any) -> EngineSpec:
    if not isinstance(entry, dict) or entry.get("kind") not in ENGINE_LABELS:
        raise BundleError(
            f"{root / MANIFEST_NAME}: an 'engines' entry must be an object whose kind is one of "
            f"{', '.join(ENGINE_LABELS)}; this agent does not know {str(entry)[:100]}: upgrade the agent or "
            "re-package the model"
        )
    kind = entry["kind"]
    try:
        if kind == ENGINE_TENSORRT:
            return EngineSpec(
                kind, onnx=root / entry["onnx"], profile=root / entry["profile"], trt_ver=entry["trt_ver"]
            )
        cubin = ShippedCubin.from_device_code(root, entry["device_code"]) if kind == ENGINE_TVM_CUDA else None
        return EngineSpec(kind, library=root / entry["library"], cubin=cubin)
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{root / MANIFEST_NAME}: the {kind} entry of 'engines' lacks {exc}") from None


def engine_specs(root: Path, manifest: dict[str, Any]) -> list[EngineSpec]:
    """The bundle's engines in order of preference. Bundles packaged before `engines` existed have one: the
    module named by `compiler.library` (CUDA when it has `device_code`)."""
    entries = manifest.get("engines")
    if entries is None:
        compiler = manifest.get("compiler")
        if not isinstance(compiler, dict) or not isinstance(compiler.get("library"), str):
            raise BundleError(f"{root / MANIFEST_NAME} names no engine (neither 'engines' nor 'compiler.library')")
        code = compiler.get("device_code")
        kind = ENGINE_TVM_CUDA if code else ENGINE_TVM_CPU
        entries = [{"kind": kind, "library": compiler["library"], "device_code": code}]
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{root / MANIFEST_NAME}: 'engines' must be a non-empty list")
    return [_engine_spec(root, entry) for entry in entries]


@dataclass(frozen=True)
class Bundle:
    """A verified, unpacked bundle."""

    root: Path
    manifest: dict[str, Any]

    @property
    def component_name(self) -> str:
        return self.manifest["component"]["name"]

    @property
    def component_version(self) -> str:
        return self.manifest["component"]["version"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["model"]["spec"]

    @property
    def library(self) -> Path:
        return self.root / self.manifest["compiler"]["library"]

    @property
    def output_names(self) -> list[str]:
        return self.manifest["outputs"]

    @property
    def engines(self) -> list[EngineSpec]:
        """What can run this bundle, best first (checked by `verify_bundle`)."""
        return engine_specs(self.root, self.manifest)


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: not a model bundle folder") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object, not {type(manifest).__name__}")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: unsupported bundle format {manifest.get('format')!r}, expected {BUNDLE_FORMAT}")
    return manifest


def verify_bundle(root: Path) -> Bundle:
    """Check every file against the manifest's sha256 before anything is loaded."""
    manifest = read_manifest(root)
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise BundleError(f"{root / MANIFEST_NAME}: 'files' must map each file's path to its sha256")
    inside = root.resolve()
    for relative, expected in files.items():
        path = root / relative
        if not path.resolve().is_relative_to(inside):
            raise BundleError(f"{root / MANIFEST_NAME}: file {relative[:200]!r} lies outside the bundle")
        if not path.is_file():
            raise BundleError(f"{relative} is listed in the manifest but missing from {root}")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{relative} has sha256 {actual}, the manifest says {expected}: the bundle was "
                "modified or corrupted; redeploy the component"
            )
    for engine in engine_specs(root, manifest):
        for path in (engine.library, engine.onnx, engine.profile, engine.cubin and engine.cubin.path):
            if path is not None and not (path.is_relative_to(root) and path.relative_to(root).as_posix() in files):
                raise BundleError(
                    f"{root / MANIFEST_NAME}: the {engine.label} needs {str(path)[:200]!r}, not listed in 'files'"
                )
    return Bundle(root=root, manifest=manifest)


def _check_archive(archive: Path, zf: zipfile.ZipFile, destination: Path) -> None:
    """Refuse, before anything is written, entries that escape `destination` and archives that would unpack to
    more than the bounds allow (a zip bomb: a few MB that unpack to GiB)."""
    entries = zf.infolist()
    if len(entries) > MAX_ENTRIES:
        raise BundleError(f"{archive} has {len(entries)} entries; a bundle has at most {MAX_ENTRIES}")
    for entry in entries:
        if not (destination / entry.filename).resolve().is_relative_to(destination.resolve()):
            raise BundleError(f"{archive}: entry {entry.filename[:200]!r} would be written outside the bundle folder")
    unpacked = sum(entry.file_size for entry in entries)
    limit = (
        MAX_UNPACKED_BYTES
        if unpacked <= SMALL_BUNDLE_BYTES
        else min(MAX_UNPACKED_BYTES, MAX_EXPANSION * archive.stat().st_size)
    )
    if unpacked > limit:
        raise BundleError(
            f"{archive} would unpack to {unpacked / 2**20:.0f} MiB from {archive.stat().st_size / 2**20:.1f} MiB; "
            f"a bundle unpacks to at most {MAX_UNPACKED_BYTES / 2**30:.0f} GiB and {MAX_EXPANSION}× its archive"
        )


def unpack_bundle(archive: Path, destination: Path) -> Path:
    """Unpack a bundle zip after `_check_archive`; returns the bundle folder."""
    try:
        with zipfile.ZipFile(archive) as zf:
            _check_archive(archive, zf, destination)
            zf.extractall(destination)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{archive} is not a complete zip archive ({exc}): copy the bundle again") from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted entries, unsupported compression
        raise BundleError(f"{archive} cannot be unpacked: {exc}") from None
    return destination


def open_bundle(path: Path, unpack_dir: Path) -> Bundle:
    """Verify a bundle folder, or unpack a bundle zip into `unpack_dir` first."""
    if path.is_file():
        return verify_bundle(unpack_bundle(path, unpack_dir))
    return verify_bundle(path)
