"""Registrations: one JSON file per model component in the registration folder (`--registry-dir`), written by
its lifecycle scripts, watched by the agent. (Not to be confused with the packaging service's model registry,
compiler/models/registry.py.)

Files are written to a temporary name and renamed into place, so the agent never reads half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from edge_agent.components.deployments import Registration
from edge_agent.defaults import COMPONENT_NAME
from edge_agent.problem_log import ProblemLog

log = logging.getLogger(__name__)
SUFFIX = ".json"


class RegistryError(Exception):
    """A registration that cannot be written."""


def check_component_name(name: str) -> None:
    if not COMPONENT_NAME.fullmatch(name) or name.startswith("."):  # a leading '.' would hide the file
        raise RegistryError(
            f"component name {name!r} is not a Greengrass component name (1-128 of A-Z a-z 0-9 - _ ., "
            "not starting with '.')"
        )


def _entry(registry_dir: Path, name: str) -> Path:
    check_component_name(name)
    return registry_dir / f"{name}{SUFFIX}"


def write_registration(registry_dir: Path, registration: Registration) -> Path:
    """Atomically create or replace the component's registration file."""
    registry_dir.mkdir(parents=True, exist_ok=True)
    target = _entry(registry_dir, registration.component_name)
    record = {
        "component_name": registration.component_name,
        "component_version": registration.component_version,
        "model_arn": registration.model_arn,
        "path": str(registration.path.resolve()),
        "registered_at": time.time(),
    }
    fd, temporary = tempfile.mkstemp(dir=registry_dir, prefix=".tmp-", suffix=SUFFIX)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def remove_registration(registry_dir: Path, name: str, version: str | None = None) -> bool:
    """Remove the registration; with `version`, only if it is still that version's. True if removed."""
    target = _entry(registry_dir, name)
    if version is not None:
        current = read_registration(target)
        if current is None or current.component_version != version:
            return False
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True


def read_registration(path: Path, problems: ProblemLog | None = None) -> Registration | None:
    """One registration file, or None when it is missing or malformed (reported to `problems`, else logged)."""
    try:
        record = json.loads(path.read_text())
        registration = Registration(
            component_name=record["component_name"],
            component_version=record["component_version"],
            model_arn=record["model_arn"],
            path=Path(record["path"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        (problems or ProblemLog(log)).problem(str(path), f"ignoring registration {path}: {exc}")
        return None
    if problems is not None:
        problems.fine(str(path))
    return registration


def read_registry(registry_dir: Path, problems: ProblemLog | None = None) -> dict[str, Registration]:
    """Every registration in the folder, by component name; malformed ones are reported to `problems`."""
    registrations: dict[str, Registration] = {}
    if not registry_dir.is_dir():
        return registrations
    for path in sorted(registry_dir.glob(f"*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        registration = read_registration(path, problems)
        if registration is not None:
            registrations[registration.component_name] = registration
    return registrations
