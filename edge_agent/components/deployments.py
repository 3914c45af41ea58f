"""A model component version as the agent knows it: where it came from, and whether its bundle verified."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge_agent.bundle.reader import Bundle, BundleError, verify_bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """What a model component's lifecycle (or the models folder) tells the agent."""

    component_name: str
    component_version: str
    model_arn: str
    path: Path


@dataclass(frozen=True)
class Deployment:
    """A registration plus its verified bundle, or the reason it failed verification."""

    registration: Registration
    bundle: Bundle | None
    error: str | None

    @property
    def name(self) -> str:
        return self.registration.component_name

    @property
    def version(self) -> str:
        return self.registration.component_version


def verify_registration(registration: Registration) -> Deployment:
    """Check every file of the bundle against its manifest; nothing is loaded here."""
    try:
        bundle = verify_bundle(registration.path)
        if bundle.component_name != registration.component_name:
            raise BundleError(
                f"the bundle at {registration.path} belongs to component '{bundle.component_name}', not "
                f"'{registration.component_name}'"
            )
        foreign = bundle.manifest.foreign_arch()
        if foreign:
            raise BundleError(foreign)
    except (BundleError, KeyError, OSError) as exc:
        reason = f"bundle {registration.component_version} failed verification: {exc}"
        log.error("%s: %s", registration.component_name, reason)
        return Deployment(registration, None, reason)
    return Deployment(registration, bundle, None)
