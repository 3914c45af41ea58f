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


# Bounds on what a bundle zip may unpack to, checked from its directory before anything is written. Weights
# barely compress (a 87 MB library zips to ~80 MB), so a large archive expanding 20-fold is not a model.
MAX_ENTRIES = 1000
MAX_UNPACKED_BYTES = 8 << 30
SMALL_BUNDLE_BYTES = 64 << 20  # below this any expansion is fine (golden arrays of zeros compress well)
MAX_EXPANSION = 20


class BundleError(Exception):
    """A bundle that is missing, malformed, or whose files do not match the manifest."""


def file_sha256(path: Path) -> bytes:
    """The raw SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def sha256_file(path: Path) -> str:
    return file_sha256(path).hex()


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
    def cubin(self) -> ShippedCubin | None:
        """The GPU code of an NVIDIA bundle (None for CPU bundles)."""
        code = self.manifest["compiler"].get("device_code")
        if code is None:
            return None
        return ShippedCubin.from_device_code(self.root, code)


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
