"""`lookout-edge-agent`: serve the Edge Agent API, and register/deregister model components."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from edge_agent.allocator import keep_image_buffers
from edge_agent.defaults import (
    AGENT_COMPONENT_NAME,
    DEFAULT_SOCKET,
    default_engine_cache_dir,
    default_registry_dir,
    package_version,
)
from edge_agent.engines.tvm_runtime import load_runtime_library_only

log = logging.getLogger("lookout-edge-agent")
COMMANDS = ("serve", "register", "deregister", "doctor")
DEFAULT_GRACE_SECONDS = 25.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _serve(args: argparse.Namespace) -> int:
    load_runtime_library_only()
    if not keep_image_buffers():
        log.info("malloc settings left as they are (not glibc, or MALLOC_* set in the environment)")
    from edge_agent.agent import Agent
    from edge_agent.components.watcher import Watcher
    from edge_agent.config import AgentConfig, ConfigError, load_config_file, socket_path
    from edge_agent.greengrass_ipc import GreengrassLink, in_greengrass
    from edge_agent.serving.server import ServingEndpoint, SocketInUse

    try:
        config = load_config_file(Path(args.config)) if args.config else AgentConfig()
        address = args.socket or config.socket
        socket_path(address)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    models_dir = Path(args.models_dir) if args.models_dir else None
    if models_dir is not None and not models_dir.is_dir():
        log.error("--models-dir %s is not a folder", models_dir)
        return 2
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lookout-edge-agent-"))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    agent = Agent(config, work_dir / "engines" if args.work_dir else default_engine_cache_dir())
    endpoint = ServingEndpoint(agent, address, args.grace)
    config_file = Path(args.config) if args.config else None
    watcher = Watcher(agent, Path(args.registry_dir), models_dir, work_dir / "unpacked", config_file, endpoint.apply)
    watcher.poll()
    try:
        endpoint.server.start()
    except (SocketInUse, RuntimeError, OSError) as exc:
        log.error("cannot serve on %s: %s", address, exc)
        agent.shutdown()
        return 1
    watcher.start()
    link = (
        GreengrassLink(agent, args.component_name, args.component_version, endpoint.apply) if in_greengrass() else None
    )
    if link is not None:
        link.start()
    log.info(
        "%s %s ready (%s); registry %s; %d model component(s)",
        args.component_name,
        args.component_version,
        "Greengrass IPC on" if link else "local mode, no Greengrass IPC",
        args.registry_dir,
        len(agent.list_models()),
    )
    while not stop.wait(1.0):
        pass
    log.info("shutting down: finishing calls in flight (up to %.0f s)", args.grace)
    endpoint.stop()
    if link is not None:
        link.stop()
    watcher.stop()
    agent.shutdown()
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _register(args: argparse.Namespace) -> int:
    from edge_agent.components.deployments import Registration, verify_registration
    from edge_agent.components.registrations import RegistryError, write_registration

    registration = Registration(args.component_name, args.component_version, args.model_arn, Path(args.path))
    deployment = verify_registration(registration)
    try:
        target = write_registration(Path(args.registry_dir), registration)
    except (RegistryError, OSError) as exc:
        log.error("cannot register %s: %s", args.component_name, exc)
        return 1
    if deployment.error:
        log.error(
            "registered %s %s, but the agent will list it as FAILED: %s",
            args.component_name,
            args.component_version,
            deployment.error,
        )
        return 1
    print(f"registered {args.component_name} {args.component_version} ({target})")
    return 0


def _deregister(args: argparse.Namespace) -> int:
    from edge_agent.components.registrations import RegistryError, remove_registration

    try:
        removed = remove_registration(Path(args.registry_dir), args.component_name, args.component_version)
    except RegistryError as exc:
        log.error("%s", exc)
        return 1
    which = f"{args.component_name} {args.component_version or ''}".strip()
    print(f"deregistered {which}" if removed else f"{which} was not registered (nothing to do)")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from edge_agent.config import AgentConfig, ConfigError, load_config_file
    from edge_agent.doctor import run_doctor
    from edge_agent.engines.choice import EngineOptions

    try:
        config = load_config_file(Path(args.config)) if args.config else AgentConfig()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.bundle and not Path(args.bundle).exists():
        log.error("--bundle %s: no such file or folder", args.bundle)
        return 2
    options = EngineOptions(
        args.tensorrt_python or config.tensorrt_python, config.tensorrt_precision, default_engine_cache_dir()
    )
    return run_doctor(Path(args.bundle) if args.bundle else None, options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookout-edge-agent",
        description="Serves the Amazon Lookout for Vision Edge Agent gRPC API (AWS.LookoutVision.EdgeAgent) from "
        "model components packaged by lookout-edge. Without a command it serves.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", metavar="{serve,register,deregister,doctor}", required=True)
    registry_help = (
        "the registry folder model components register into (default: $LOOKOUT_EDGE_AGENT_REGISTRY or "
        "~/.lookout-edge-agent/registry)"
    )

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the Edge Agent API (the default command)",
        description="Serve the Edge Agent API until SIGTERM or SIGINT.",
    )
    serve.add_argument(
        "--socket", help=f"unix:///path.sock to listen on (default: configuration Socket, else {DEFAULT_SOCKET})"
    )
    serve.add_argument(
        "--models-dir",
        help="a folder whose entries are model bundles (model.zip files or unpacked "
        "bundle folders) to serve without Greengrass",
    )
    serve.add_argument("--registry-dir", default=str(default_registry_dir()), help=registry_help)
    serve.add_argument(
        "--config",
        help="YAML/JSON configuration file (Socket, Concurrency, MaxQueuedRequests, "
        "MemoryBudgetMiB, Models.<component>.Threshold); re-read when it changes",
    )
    serve.add_argument(
        "--work-dir",
        help="where model zips are unpacked and TensorRT engines are cached (default: a temporary folder for the "
        "zips, ~/.lookout-edge-agent/engines for the engines)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help=f"seconds calls in flight may take to finish on shutdown (default {DEFAULT_GRACE_SECONDS:.0f})",
    )
    serve.add_argument(
        "--component-name",
        default=AGENT_COMPONENT_NAME,
        help=f"the agent's Greengrass component name, for status reports (default {AGENT_COMPONENT_NAME})",
    )
    serve.add_argument(
        "--component-version",
        default=package_version(),
        help="the agent's component version, for status reports (default: the installed package version)",
    )
    serve.set_defaults(run=_serve)

    register = commands.add_parser(
        "register",
        parents=[common],
        help="register a model component's bundle with the agent",
        description="Atomically write the component's registration; the running agent "
        "verifies the bundle and lists the component within a second.",
    )
    register.add_argument("--component-name", required=True)
    register.add_argument("--component-version", required=True)
    register.add_argument("--model-arn", required=True, help="ARN of the Lookout for Vision model it was built from")
    register.add_argument("--path", required=True, help="the unpacked bundle folder (holds manifest.json)")
    register.add_argument("--registry-dir", default=str(default_registry_dir()), help=registry_help)
    register.set_defaults(run=_register)

    deregister = commands.add_parser(
        "deregister",
        parents=[common],
        help="remove a model component's registration",
        description="Remove the registration; with --component-version only if that "
        "version is still the registered one (so a newer version stays).",
    )
    deregister.add_argument("--component-name", required=True)
    deregister.add_argument("--component-version")
    deregister.add_argument("--registry-dir", default=str(default_registry_dir()), help=registry_help)
    deregister.set_defaults(run=_deregister)

    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check this device: CPU, NVIDIA driver and GPU, TVM runtime, TensorRT; with --bundle, each engine",
        description="Report what this device offers the agent (architecture, C library, Python, memory, NVIDIA "
        "driver and GPUs, the TVM runtime and its CUDA support, TensorRT's Python bindings). With --bundle, try "
        "each of the bundle's engines on its golden input as StartModel would, with latency, and say which will "
        "serve and what to install for the better ones. Exit code 1 when no engine can run the bundle.",
    )
    doctor.add_argument("--bundle", help="a model bundle (model.zip or its unpacked folder) to try on this device")
    doctor.add_argument("--config", help="the agent's configuration file (for TensorRTPython, TensorRTPrecision)")
    doctor.add_argument("--tensorrt-python", help="the Python with TensorRT's bindings (default: look for one)")
    doctor.set_defaults(run=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")  # `lookout-edge-agent --socket …` serves
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format=LOG_FORMAT)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
