"""Registering a packaged component with AWS IoT Greengrass (`LOOKOUT_EDGE_GREENGRASS=cloud`): greengrassv2
CreateComponentVersion with the inline recipe, then DescribeComponent until the version is DEPLOYABLE, as the
original service did for its packaging jobs. boto3 with the standard AWS configuration
(AWS_ENDPOINT_URL_GREENGRASSV2 for another endpoint)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compiler.settings import Settings

DEPLOYABLE, FAILED = "DEPLOYABLE", "FAILED"
POLL_SECONDS = 2.0
DEPLOYABLE_TIMEOUT_SECONDS = 600.0  # Greengrass checks each artifact URI it can reach before DEPLOYABLE


class RegistrationError(RuntimeError):
    """Greengrass refused the component version or did not make it deployable; the message says why."""


class GreengrassCloud:
    """The Greengrass V2 cloud service of this account and region."""

    def __init__(self, region: str, client: Any = None) -> None:
        import boto3

        self.client = client or boto3.client("greengrassv2", region_name=region)

    def register(
        self, recipe: dict[str, Any], tags: dict[str, str], progress: Callable[[str], None] = lambda _: None
    ) -> str:
        """Create the component version from `recipe` and wait until it is DEPLOYABLE; returns its ARN."""
        from botocore.exceptions import BotoCoreError, ClientError

        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        try:
            created = self.client.create_component_version(
                inlineRecipe=json.dumps(recipe).encode(), **({"tags": tags} if tags else {})
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ConflictException":
                raise RegistrationError(
                    f"Greengrass already has component {name} version {version} (ConflictException: "
                    f"{error.get('Message')}). Package again with a new ComponentVersion."
                ) from None
            raise RegistrationError(
                f"Greengrass refused {name} {version}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise RegistrationError(f"Greengrass cannot be reached: {exc}") from None
        arn = created["arn"]
        deadline = time.monotonic() + DEPLOYABLE_TIMEOUT_SECONDS
        status = created.get("status", {})
        while status.get("componentState") != DEPLOYABLE:
            if status.get("componentState") == FAILED:
                details = "; ".join(f"{key}: {value}" for key, value in (status.get("errors") or {}).items())
                raise RegistrationError(
                    f"Greengrass could not make {name} {version} deployable: {status.get('message', '')} "
                    f"{details}".strip()
                )
            if time.monotonic() > deadline:
                raise RegistrationError(
                    f"{name} {version} was not DEPLOYABLE in Greengrass after {DEPLOYABLE_TIMEOUT_SECONDS:.0f} s "
                    f"(last state {status.get('componentState')})"
                )
            progress(f"Waiting for Greengrass to make {name} {version} deployable ({status.get('componentState')}).")
            time.sleep(POLL_SECONDS)
            try:
                status = self.client.describe_component(arn=arn).get("status", {})
            except (BotoCoreError, ClientError) as exc:
                raise RegistrationError(f"Greengrass cannot describe {arn}: {exc}") from None
        return arn


def open_greengrass_cloud(settings: Settings) -> GreengrassCloud | None:
    """Greengrass V2 when `settings.greengrass` is cloud; None when components stay in the local catalog."""
    return GreengrassCloud(settings.region) if settings.greengrass == "cloud" else None


def publish_component(
    recipe: dict[str, Any], artifacts: list[tuple[Path, str]], region: str, progress: Callable[[str], None] = print
) -> str:
    """Upload each artifact file to the s3:// URI its recipe names, then register the recipe with Greengrass V2
    (`build-agent-component --publish`); returns the component version's ARN."""
    from compiler.greengrass.output_store import split_s3_uri
    from compiler.greengrass.s3_store import S3Store

    store = S3Store(region)
    for bucket in sorted({split_s3_uri(uri)[0] for _, uri in artifacts}):
        store.check_bucket(bucket)
    for path, uri in artifacts:
        progress(f"uploading {path.name} to {uri}")
        store.put_file(*split_s3_uri(uri), path)
    progress(f"registering {recipe['ComponentName']} {recipe['ComponentVersion']} with Greengrass")
    return GreengrassCloud(region).register(recipe, {}, progress)
