"""Local use without Greengrass: every entry of a models folder is a bundle zip or an unpacked bundle."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from edge_agent.bundle import BundleError, read_manifest, sha256_file, unpack_bundle
from edge_agent.deployments import Registration

log = logging.getLogger(__name__)


def _unpacked(archive: Path, unpack_root: Path) -> Path:
    """Unpack a zip once per content (keyed by its sha256) and reuse the folder afterwards."""
    destination = unpack_root / sha256_file(archive)[:24]
    if not (destination / "manifest.json").is_file():
        staging = unpack_root / f".{destination.name}.partial"
        staging.mkdir(parents=True, exist_ok=True)
        unpack_bundle(archive, staging)
        staging.rename(destination)
    return destination


def read_models_folder(models_dir: Path, unpack_root: Path) -> dict[str, Registration]:
    """Registrations for the bundles in `models_dir`, named by their manifests; bad entries are logged."""
    registrations: dict[str, Registration] = {}
    for entry in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        if entry.name.startswith("."):
            continue
        try:
            folder = _unpacked(entry, unpack_root) if entry.suffix == ".zip" else entry
            if not folder.is_dir():
                continue
            manifest = read_manifest(folder)
            registration = Registration(
                component_name=manifest["component"]["name"],
                component_version=manifest["component"]["version"],
                model_arn=manifest["model"]["arn"],
                path=folder,
            )
        except (BundleError, KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
            log.error("ignoring %s in the models folder: %s", entry, exc)
            continue
        if registration.component_name in registrations:
            log.error("ignoring %s: another entry already provides %s", entry, registration.component_name)
            continue
        registrations[registration.component_name] = registration
    return registrations
