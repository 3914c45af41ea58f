"""`lookout-edge`: the `aws lookoutvision` command line, generated from the API model.

Subcommands and flags are the kebab-case names of the operations and their input members; service
errors print as the AWS CLI prints them and exit 254; usage errors exit 252.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import yaml

from compiler.api import fleet_commands, local_commands, serve_command
from compiler.api.api_model import OPERATIONS, SHAPES, split_camel
from compiler.api.client import Client
from compiler.api.errors import ServiceError
from compiler.api.exit_codes import EXIT_SERVICE_ERROR, EXIT_USAGE, EXIT_WAIT_FAILED

WAIT_POLL_SECONDS = 0.5


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def kebab(name: str) -> str:
    return split_camel(name, "-")


def _read_document(text: str, flag: str) -> Any:
    """JSON text (an object or a list), `file://path`, or (for convenience) a path to a JSON file."""
    if text.startswith("file://"):
        path: Path | None = Path(text[len("file://") :]).expanduser()
    elif text.lstrip().startswith(("{", "[")):
        path = None
    else:
        path = Path(text).expanduser()
    try:
        return json.loads(path.read_text() if path else text)
    except OSError as exc:
        raise UsageError(
            f"{flag}: cannot read the file {str(path)!r}: {exc.strerror}; pass JSON text or file://path.json"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        source = f"the file {str(path)!r} is" if path else "the value is"
        raise UsageError(f"{flag}: {source} not valid JSON ({exc}); pass JSON text or file://path.json") from None


def _convert(value: str, shape_name: str, flag: str) -> Any:
    kind = SHAPES[shape_name]["type"]
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"{flag}: expected an integer, got {value!r}") from None
    if kind in ("structure", "list"):
        return _read_document(value, flag)
    return value


def skeleton(shape_name: str) -> Any:
    """A placeholder value for `--generate-cli-skeleton`."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        return {member: skeleton(child) for member, child in shape["members"].items()}
    if kind == "list":
        return [skeleton(shape["member"])]
    if "enum" in shape:
        return shape["enum"][0]
    return {"integer": 0, "float": 0.0, "boolean": False}.get(kind, "")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _table(data: Any, indent: str = "") -> list[str]:
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                lines.append(f"{indent}{key}")
                lines.extend(_table(value, indent + "  "))
            else:
                lines.append(f"{indent}{key:<28} {value}")
    elif isinstance(data, list):
        for i, item in enumerate(data, 1):
            lines.append(f"{indent}[{i}]")
            lines.extend(_table(item, indent + "  "))
    else:
        lines.append(f"{indent}{data}")
    return lines


def render(result: dict[str, Any], output: str) -> str:
    plain = json.loads(json.dumps(result, default=_json_default))
    if output == "yaml":
        return yaml.safe_dump(plain, sort_keys=False).rstrip()
    if output == "table":
        return "\n".join(_table(plain))
    return json.dumps(plain, indent=4)


def _add_operation(subparsers: argparse._SubParsersAction, operation: str, spec: dict) -> None:
    parser = subparsers.add_parser(kebab(operation), help=spec["doc"], description=spec["doc"])
    parser.set_defaults(operation=operation)
    for member, shape_name in spec["input"].items():
        shape = SHAPES[shape_name]
        hint = shape.get("enum") and f"one of {', '.join(shape['enum'])}"
        if shape["type"] in ("structure", "list"):
            hint = "JSON text or file://path.json"
        required = " (required)" if member in spec["required"] else ""
        parser.add_argument(
            f"--{kebab(member)}",
            dest=member,
            metavar=shape_name.upper() if not hint else None,
            help=f"{member}{required}" + (f": {hint}" if hint else ""),
        )
    parser.add_argument("--cli-input-json", help="request parameters as JSON text or file://path.json")
    parser.add_argument(
        "--generate-cli-skeleton", action="store_true", help="print a JSON skeleton of the request parameters and exit"
    )
    if "Output" not in spec["input"]:
        parser.add_argument(
            "--output",
            dest="output_format",
            choices=["json", "yaml", "table"],
            default="json",
            help="output format (default json)",
        )
    if operation == "StartModelPackagingJob":
        parser.add_argument(
            "--wait",
            action="store_true",
            help="wait until the job SUCCEEDED or FAILED, showing each step; exit 255 on FAILED",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lookout-edge",
        description="Package ONNX anomaly-detection models as Greengrass "
        "components, with the commands of `aws lookoutvision`.",
    )
    parser.add_argument(
        "--data-dir", help="registry data directory (default: $LOOKOUT_EDGE_DATA_DIR or ~/.lookout-edge)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for operation, spec in OPERATIONS.items():
        _add_operation(subparsers, operation, spec)
    local_commands.add_parsers(subparsers)
    serve_command.add_parsers(subparsers)
    fleet_commands.add_parsers(subparsers)
    return parser


def request_params(args: argparse.Namespace) -> dict[str, Any]:
    spec = OPERATIONS[args.operation]
    params: dict[str, Any] = {}
    if args.cli_input_json:
        loaded = _read_document(args.cli_input_json, "--cli-input-json")
        if not isinstance(loaded, dict):
            raise UsageError("--cli-input-json must be a JSON object of request parameters")
        params.update(loaded)
    for member, shape_name in spec["input"].items():
        value = getattr(args, member)
        if value is not None:
            params[member] = _convert(value, shape_name, f"--{kebab(member)}")
    missing = [f"--{kebab(m)}" for m in spec["required"] if m not in params]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)}")
    return params


def _wait(client: Client, project: str, job_name: str) -> int:
    """Print every step of the job as it happens (each is kept, so none is missed between polls)."""
    last_id = 0
    while True:
        for step in client.service.jobs.job_steps(project, job_name, last_id):
            stamp = time.strftime("%H:%M:%S", time.localtime(step.at))
            print(f"[{stamp}] {step.status}: {step.message}", file=sys.stderr, flush=True)
            last_id = step.id
            if step.status in ("SUCCEEDED", "FAILED"):
                return 0 if step.status == "SUCCEEDED" else EXIT_WAIT_FAILED
        time.sleep(WAIT_POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "operation"):
        try:
            return args.run(args)
        except OSError as exc:  # a folder or file the command cannot write or read
            print(f"lookout-edge {args.command}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
            return EXIT_USAGE
    spec = OPERATIONS[args.operation]
    if args.generate_cli_skeleton:
        print(json.dumps({m: skeleton(s) for m, s in spec["input"].items()}, indent=4))
        return 0
    try:
        params = request_params(args)
        client = Client(data_dir=args.data_dir)
    except (UsageError, ValueError) as exc:  # ValueError: the service's settings (environment variables)
        print(f"lookout-edge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = client.call(args.operation, params)
    except ServiceError as exc:
        print(
            f"An error occurred ({exc.code}) when calling the {args.operation} operation: {exc.message}",
            file=sys.stderr,
        )
        return EXIT_SERVICE_ERROR
    print(render(result, getattr(args, "output_format", "json")))
    if getattr(args, "wait", False):
        return _wait(client, params["ProjectName"], result["JobName"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
