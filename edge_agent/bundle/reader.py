"""Model bundles: the folder (or zip) a packaging job writes, verified against its manifest (manifest.py)
before anything is loaded."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.bundle.manifest import (
    ENGINE_LABELS,
    ENGINE_TENSORRT,
    ENGINE_TVM_CUDA,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    read_manifest_file,
)
from edge_agent.bundle.model_spec import ModelSpec
from edge_agent.engines.cuda_device_code import ShippedCubin

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


def engine_specs(root: Path, manifest: Manifest) -> list[EngineSpec]:
    """The bundle's engines in order of preference, their files in the bundle folder `root`."""
    return [_engine_spec(root, entry) for entry in manifest.engines]


@dataclass(frozen=True)
class Bundle:
    """A verified, unpacked bundle."""

    root: Path
    manifest: Manifest

    @property
    def component_name(self) -> str:
        return self.manifest.component_name

    @property
    def component_version(self) -> str:
        return self.manifest.component_version

    @property
    def spec(self) -> ModelSpec:
        return self.manifest.spec

    @property
    def output_names(self) -> list[str]:
        return self.manifest.outputs

    @property
    def engines(self) -> list[EngineSpec]:
        """What can run this bundle, best first (checked by `verify_bundle`)."""
        return engine_specs(self.root, self.manifest)


def read_manifest(root: Path) -> Manifest:
    """The bundle folder's manifest, validated against the contract; BundleError says what is wrong."""
    try:
        return read_manifest_file(root / MANIFEST_NAME)
    except ManifestError as exc:
        raise BundleError(str(exc)) from None


def verify_bundle(root: Path) -> Bundle:
    """Check every file against the manifest's sha256 before anything is loaded."""
    manifest = read_manifest(root)
    files = manifest.files
    inside = root.resolve()
    for relative, expected in files.items():
        path = root / relative
        if not path.resolve().is_relative_to(inside):
            raise BundleError(f"{root / MANIFEST_NAME}: file {relative[:200]!r} lies outside the bundle")
        if not path.is_file():
            raise BundleError(f"{relative} is listed in the manifest but missing from {root}")
        size, expected_size = path.stat().st_size, manifest.sizes.get(relative)
        if expected_size is not None and size != expected_size:
            raise BundleError(
                f"{relative} is {size} bytes, the manifest says {expected_size}: the bundle was truncated or "
                "modified; redeploy the component"
            )
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
