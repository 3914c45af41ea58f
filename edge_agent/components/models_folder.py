"""Local use without Greengrass: every entry of a models folder is a bundle zip or an unpacked bundle."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

from edge_agent.bundle.manifest import MANIFEST_NAME, Manifest
from edge_agent.bundle.reader import BundleError, read_manifest, sha256_file, unpack_bundle
from edge_agent.components.deployments import Deployment, Registration
from edge_agent.problem_log import ProblemLog


class ModelsFolder:
    """Reads the folder on every poll; a zip is hashed and unpacked (or found broken) only when its size or
    mtime changes."""

    def __init__(self, folder: Path, unpack_root: Path, problems: ProblemLog) -> None:
        self.folder = folder
        self.unpack_root = unpack_root
        self.problems = problems
        self._unpacked: dict[tuple[Path, int, int], Path | BundleError] = {}

    def _unpack(self, archive: Path) -> Path:
        info = archive.stat()
        key = (archive, info.st_size, info.st_mtime_ns)
        if key not in self._unpacked:
            try:
                self._unpacked[key] = self._unpack_once(archive)
            except BundleError as exc:
                self._unpacked[key] = exc
        outcome = self._unpacked[key]
        if isinstance(outcome, BundleError):
            raise outcome
        return outcome

    def _unpack_once(self, archive: Path) -> Path:
        destination = self.unpack_root / sha256_file(archive)[:24]
        if not (destination / MANIFEST_NAME).is_file():
            staging = self.unpack_root / f".{destination.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            try:
                unpack_bundle(archive, staging)
            except BundleError:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            staging.rename(destination)
        return destination

    def scan(self) -> tuple[dict[str, Registration], dict[str, Deployment]]:
        """Registrations for the bundles in the folder, named by their manifests, and a FAILED deployment (named
        after the file) with the reason for each entry that cannot be used; problems are logged once."""
        registrations: dict[str, Registration] = {}
        failures: dict[str, Deployment] = {}
        for entry in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            if entry.name.startswith("."):
                continue
            try:
                folder = self._unpack(entry) if entry.suffix == ".zip" else entry
                if not folder.is_dir():
                    continue
                registration = _registration(read_manifest(folder), folder)
            except (BundleError, OSError, zipfile.BadZipFile) as exc:
                reason = f"models folder entry {entry.name} cannot be used: {exc}"
                self.problems.problem(str(entry), f"ignoring {entry} in the models folder: {exc}")
                name = _failure_name(entry)
                failures[name] = Deployment(Registration(name, "unknown", "", entry), None, reason)
                continue
            if registration.component_name in registrations:
                self.problems.problem(
                    str(entry), f"ignoring {entry}: another entry already provides {registration.component_name}"
                )
                continue
            self.problems.fine(str(entry))
            registrations[registration.component_name] = registration
        return registrations, {name: failed for name, failed in failures.items() if name not in registrations}


def _registration(manifest: Manifest, folder: Path) -> Registration:
    """The registration a bundle's (validated) manifest describes."""
    return Registration(manifest.component_name, manifest.component_version, manifest.model_arn, folder)


def _failure_name(entry: Path) -> str:
    """A component name for listing a broken entry: its file name without .zip, made a valid name."""
    stem = entry.name.removesuffix(".zip")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")[:128] or "unnamed"
