"""Local use without Greengrass: every entry of a models folder is a bundle zip or an unpacked bundle."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from edge_agent.bundle import BundleError, read_manifest, sha256_file, unpack_bundle
from edge_agent.deployments import Registration
from edge_agent.problem_log import ProblemLog


class ModelsFolder:
    """Reads the folder on every poll; a zip is hashed and unpacked only when its size or mtime changes."""

    def __init__(self, folder: Path, unpack_root: Path, problems: ProblemLog) -> None:
        self.folder = folder
        self.unpack_root = unpack_root
        self.problems = problems
        self._unpacked: dict[tuple[Path, int, int], Path] = {}

    def _unpack(self, archive: Path) -> Path:
        info = archive.stat()
        key = (archive, info.st_size, info.st_mtime_ns)
        if key not in self._unpacked:
            destination = self.unpack_root / sha256_file(archive)[:24]
            if not (destination / "manifest.json").is_file():
                staging = self.unpack_root / f".{destination.name}.partial"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                unpack_bundle(archive, staging)
                staging.rename(destination)
            self._unpacked[key] = destination
        return self._unpacked[key]

    def registrations(self) -> dict[str, Registration]:
        """Registrations for the bundles in the folder, named by their manifests; bad entries are logged."""
        registrations: dict[str, Registration] = {}
        for entry in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            if entry.name.startswith("."):
                continue
            try:
                folder = self._unpack(entry) if entry.suffix == ".zip" else entry
                if not folder.is_dir():
                    continue
                manifest = read_manifest(folder)
                registration = Registration(
                    component_name=manifest["component"]["name"],
                    component_version=manifest["component"]["version"],
                    model_arn=manifest["model"]["arn"],
                    path=folder,
                )
            except (BundleError, KeyError, TypeError, OSError, ValueError, zipfile.BadZipFile) as exc:
                self.problems.problem(str(entry), f"ignoring {entry} in the models folder: {exc}")
                continue
            if registration.component_name in registrations:
                self.problems.problem(
                    str(entry), f"ignoring {entry}: another entry already provides {registration.component_name}"
                )
                continue
            self.problems.fine(str(entry))
            registrations[registration.component_name] = registration
        return registrations
