"""The gRPC server on the Unix socket: socket file hygiene, message limits, health service, graceful stop.

The public socket belongs to the peer relay (edge_agent/serving/peer_relay.py), which tells the servicer who each caller
is; the gRPC server itself listens in the relay's private folder."""

from __future__ import annotations

import logging
import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, socket_path
from edge_agent.serving.peer_relay import PeerRelay
from edge_agent.serving.servicer import EdgeAgentServicer, add_to_server

log = logging.getLogger(__name__)
SERVICE_NAME = "AWS.LookoutVision.EdgeAgent"
# A 4096×4096 RGB888 image is 48 MiB, in the request (byte_data) and in the response (anomaly_mask).
MAX_MESSAGE_BYTES = 64 << 20
HANDLER_THREADS = 64
MAX_CONCURRENT_RPCS = 1024  # beyond this gRPC itself answers RESOURCE_EXHAUSTED
SOCKET_MODE = 0o660  # owner and group (ggc_group on a Greengrass device) may connect


class SocketInUse(Exception):
    """The socket path belongs to a running server or is not a socket at all."""


def prepare_socket(path: Path) -> None:
    """Remove a stale socket file left by a crashed agent; refuse a live one or a non-socket file."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; remove it or configure another Socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            log.warning("removed stale socket file %s (no process was listening)", path)
            return
    raise SocketInUse(f"another process is already serving on {path}; stop it or configure another Socket")


class AgentServer:
    """The Edge Agent service and grpc.health.v1 on one Unix socket."""

    def __init__(self, agent: Agent, address: str) -> None:
        self.address = address
        self.path = socket_path(address)
        self.relay = PeerRelay(self.path, SOCKET_MODE)
        self.health = health.HealthServicer()
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=HANDLER_THREADS, thread_name_prefix="rpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        )
        add_to_server(EdgeAgentServicer(agent, self.relay.caller), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._inode: int | None = None

    def start(self) -> None:
        prepare_socket(self.path)
        self._server.add_insecure_port(f"unix://{self.relay.internal}")
        self._server.start()
        try:
            self.relay.start()
        except OSError:
            self._server.stop(None)
            self.relay.remove_folder()
            raise
        self._inode = self.path.stat().st_ino
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s", SERVICE_NAME, self.address)

    def stop(self, grace: float) -> None:
        """Refuse new calls, give calls in flight up to `grace` seconds, then remove the socket file."""
        self.health.enter_graceful_shutdown()
        self.relay.stop_accepting()
        self._server.stop(grace).wait()
        try:
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self.relay.remove_folder()
        log.info("stopped serving on %s", self.address)


class ServingEndpoint:
    """The agent's server, moved to another socket without a restart when the configuration's Socket changes.

    `address` is where to serve first (--socket, else the configuration's Socket); afterwards only a change of
    the configured Socket moves the server.
    """

    def __init__(self, agent: Agent, address: str, grace: float) -> None:
        self.agent = agent
        self.grace = grace
        self.server = AgentServer(agent, address)
        self._configured_socket = agent.config.socket
        self._lock = threading.Lock()  # the configuration file watcher and Greengrass IPC both apply

    def apply(self, config: AgentConfig) -> None:
        """Apply a configuration: model settings at once; a new Socket by serving there, then retiring the old one."""
        with self._lock:
            self.agent.configure(config)
            if config.socket == self._configured_socket:
                return
            self._configured_socket = config.socket
            if config.socket == self.server.address:
                return
            moved = AgentServer(self.agent, config.socket)
            try:
                moved.start()
            except (SocketInUse, RuntimeError, OSError) as exc:
                log.error("staying on %s: cannot serve on %s: %s", self.server.address, config.socket, exc)
                return
            retired, self.server = self.server, moved
        threading.Thread(target=retired.stop, args=(self.grace,), name="retire-socket", daemon=True).start()

    def stop(self) -> None:
        self.server.stop(self.grace)
