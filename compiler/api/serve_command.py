"""`lookout-edge serve` (the HTTP face) and `lookout-edge service-model` (the botocore model for it)."""

from __future__ import annotations

import argparse
import configparser
import sys
from pathlib import Path

from compiler.api.exit_codes import EXIT_USAGE

DEFAULT_PORT = 8470


def read_credentials(path: Path) -> dict[str, str]:
    """Access key → secret key from a file in the AWS shared-credentials format (every profile in it)."""
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise ValueError(f"--credentials {path}: no such file")
    pairs = {
        parser[section]["aws_access_key_id"].strip(): parser[section]["aws_secret_access_key"].strip()
        for section in parser.sections()
        if {"aws_access_key_id", "aws_secret_access_key"} <= set(parser[section])
    }
    if not pairs:
        raise ValueError(f"--credentials {path}: no profile with aws_access_key_id and aws_secret_access_key")
    return pairs


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from compiler.api.http_server import build_app, is_loopback
    from compiler.api.service import Service
    from compiler.settings import Settings

    try:
        credentials = read_credentials(Path(args.credentials)) if args.credentials else None
    except (ValueError, configparser.Error) as exc:
        print(f"lookout-edge serve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if credentials is None and not is_loopback(args.host):
        print(
            f"lookout-edge serve: error: --host {args.host} is reachable from other machines; give --credentials "
            "(every request must then be SigV4-signed with one of them), or serve on 127.0.0.1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if bool(args.tls_cert) != bool(args.tls_key):
        print("lookout-edge serve: error: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    app = build_app(Service(Settings.from_env(args.data_dir)), credentials)
    scheme = "https" if args.tls_cert else "http"
    print(f"serving Lookout for Vision on {scheme}://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        log_level="info",
        access_log=True,
        timeout_graceful_shutdown=30,
    )
    return 0


def _service_model(args: argparse.Namespace) -> int:
    from compiler.api.service_model import write_service_model

    for path in write_service_model(Path(args.output)):
        print(path)
    print(f"export AWS_DATA_PATH={Path(args.output).resolve()}  # then boto3 and the aws CLI know lookoutvision")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the API over HTTP (rest-json) for boto3 and the aws CLI",
        description="Serves every Lookout for Vision operation this service implements over its rest-json binding, "
        "so boto3.client('lookoutvision', endpoint_url=...) and `aws lookoutvision --endpoint-url ...` work "
        "unchanged (their model: `lookout-edge service-model`). Loopback only unless --credentials is given.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument(
        "--credentials",
        help="AWS shared-credentials file: every request must be SigV4-signed with one of its keys "
        "(required when --host is not a loopback address)",
    )
    serve.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.set_defaults(run=_serve)

    model = subparsers.add_parser(
        "service-model",
        help="write the botocore service model of `serve` (for AWS_DATA_PATH)",
        description="Writes lookoutvision/2020-11-20/service-2.json and paginators-1.json under --output; with "
        "AWS_DATA_PATH pointing there, current boto3 and aws CLI releases know the lookoutvision service.",
    )
    model.add_argument("--output", required=True, help="folder to use as AWS_DATA_PATH")
    model.set_defaults(run=_service_model)
