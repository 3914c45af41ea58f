"""`lookout-edge deploy` and `lookout-edge fleet-status`: Greengrass V2 deployments of packaged components to a
thing or thing group, and every device's agent report read back."""

from __future__ import annotations

import argparse
import re
import sys

from compiler.api.exit_codes import EXIT_SERVICE_ERROR
from compiler.api.validation import value_problems
from compiler.greengrass.fleet import FAILURE_HANDLING, RolloutPolicy
from edge_agent.config import AgentConfig

TARGET_ARN = re.compile(r"arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:(thing|thinggroup)/[\w:-]+")
# A device is stale when its agent has not reported for this many report intervals (heartbeats).
STALE_INTERVALS = 3


def _target(value: str) -> str:
    if not TARGET_ARN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a thing or thing-group ARN (arn:aws:iot:<region>:<account>:thing/<name> or "
            "…:thinggroup/<name>)"
        )
    return value


def _component(value: str) -> tuple[str, str]:
    """NAME=VERSION, each checked against the API model's ComponentName and ComponentVersion shapes."""
    name, equals, version = value.partition("=")
    problems = value_problems(name, "ComponentName", "component name") if equals else []
    problems += value_problems(version, "ComponentVersion", "component version") if equals else []
    if not equals or problems:
        why = "; ".join(problems) or "no '='"
        raise argparse.ArgumentTypeError(
            f"{value!r} is not NAME=MAJOR.MINOR.PATCH (e.g. com.example.Boards=1.0.0): {why}"
        )
    return name, version


def _aws_error(command: str, exc: Exception) -> int:
    print(f"lookout-edge {command}: error: {exc}", file=sys.stderr)
    return EXIT_SERVICE_ERROR


def _deploy(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from compiler.greengrass.fleet import deploy

    policy = RolloutPolicy(args.failure_handling, args.update_timeout, args.devices_per_minute, args.device_timeout)
    try:
        created = deploy(boto3.client("greengrassv2"), args.target_arn, dict(args.component), policy)
    except (BotoCoreError, ClientError) as exc:
        return _aws_error("deploy", exc)
    print(
        f"deployment {created['deploymentId']} created for {args.target_arn}; follow it with "
        f"`lookout-edge fleet-status --target-arn {args.target_arn}`"
    )
    return 0


def _fleet_status(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from compiler.greengrass.fleet import fleet_status, status_table

    try:
        reports = fleet_status(boto3.client("greengrassv2"), boto3.client("iot-data"), args.target_arn)
    except (BotoCoreError, ClientError) as exc:
        return _aws_error("fleet-status", exc)
    print(status_table(reports, args.stale_after))
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy component versions to a thing or thing group (Greengrass V2)",
        description="Creates a Greengrass V2 deployment of the given component versions, merged into the target's "
        "latest deployment (its other components stay), with Greengrass's rollout, timeout and failure policies. "
        "AWS credentials and region come from the standard AWS configuration.",
    )
    deploy.add_argument(
        "--component",
        type=_component,
        action="append",
        required=True,
        metavar="NAME=VERSION",
        help="a component version to deploy (repeat for several)",
    )
    deploy.add_argument("--target-arn", type=_target, required=True, help="thing or thing-group ARN")
    deploy.add_argument(
        "--failure-handling",
        choices=FAILURE_HANDLING,
        default="ROLLBACK",
        help="what a device does when the deployment fails on it (default ROLLBACK)",
    )
    deploy.add_argument(
        "--update-timeout",
        type=int,
        default=60,
        metavar="SECONDS",
        help="how long running components get to get ready for an update (default 60)",
    )
    deploy.add_argument(
        "--devices-per-minute",
        type=int,
        metavar="N",
        help="roll out to at most N devices a minute (default: Greengrass's)",
    )
    deploy.add_argument(
        "--device-timeout", type=int, metavar="MINUTES", help="a device's deployment fails after this long in progress"
    )
    deploy.set_defaults(run=_deploy)

    status = subparsers.add_parser(
        "fleet-status",
        help="every device's agent and model versions and status, from its agent's reports",
        description="Lists the core devices of a thing or thing group and reads the report each one's Edge Agent "
        "keeps in its named shadow: agent version, each model component's version and status, last report time. "
        "Devices whose agent has not reported for --stale-after seconds are flagged STALE.",
    )
    status.add_argument("--target-arn", type=_target, required=True, help="thing or thing-group ARN")
    default_stale = STALE_INTERVALS * AgentConfig().report_interval_seconds
    status.add_argument(
        "--stale-after",
        type=float,
        default=default_stale,
        metavar="SECONDS",
        help=f"flag devices silent this long (default {default_stale}: three report intervals)",
    )
    status.set_defaults(run=_fleet_status)
