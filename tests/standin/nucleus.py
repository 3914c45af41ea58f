"""The stand-in nucleus: Greengrass IPC over a Unix socket, for the operations the agent uses.

It speaks the wire protocol of specs/greengrass.md §3 (framing, CONNECT/CONNECT_ACK with authToken,
streams, modeled errors) and the request/response shapes of §4, records every call, and injects faults:
refuse CONNECT, drop connections, answer an operation with a modeled error, delay an operation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.standin import eventstream as es

log = logging.getLogger(__name__)
PREFIX = "aws.greengrass#"
SHADOW_NAME = re.compile(r"[a-zA-Z0-9:_-]*")


class ModeledError(Exception):
    def __init__(self, shape: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.shape = shape
        self.body = {"message": message, **fields}


@dataclass
class Call:
    """One operation request the nucleus received (payload as decoded JSON)."""

    operation: str
    request: dict[str, Any]
    at: float = field(default_factory=time.time)


class _Connection:
    def __init__(self, nucleus: StandinNucleus, sock: socket.socket) -> None:
        self.nucleus = nucleus
        self.sock = sock
        self.write_lock = threading.Lock()
        self.connected = False
        self.last_stream = 0
        self.subscriptions: dict[int, list[str]] = {}  # stream id → configuration key path

    def send(self, data: bytes) -> None:
        with self.write_lock:
            self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def serve(self) -> None:
        decoder = es.Decoder()
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                for message in decoder.feed(data):
                    if not self.handle(message):
                        return
        except (OSError, es.FramingError) as exc:
            log.debug("connection ended: %s", exc)
        finally:
            self.nucleus._forget(self)
            self.close()

    def handle(self, message: es.Message) -> bool:
        """False ends the connection."""
        if not self.connected:
            return self._handshake(message)
        if message.message_type == es.PING:
            echo = {k: v for k, v in message.headers.items() if not k.startswith(":")}
            self.send(es.rpc(es.PING_RESPONSE, 0, 0, message.payload, **echo))
            return True
        if message.message_type != es.APPLICATION_MESSAGE or message.stream_id <= 0:
            self.send(
                es.rpc(
                    es.PROTOCOL_ERROR,
                    0,
                    0,
                    b'{"message": "unexpected message"}',
                    **{":content-type": "application/json"},
                )
            )
            return False
        if message.stream_id <= self.last_stream:
            if message.flags & es.TERMINATE_STREAM:
                self.subscriptions.pop(message.stream_id, None)
            return True
        self.last_stream = message.stream_id
        self._operation(message)
        return True

    def _handshake(self, message: es.Message) -> bool:
        nucleus = self.nucleus
        token = None
        if message.message_type == es.CONNECT and message.headers.get(":version") == "0.1.0":
            try:
                token = json.loads(message.payload or b"{}").get("authToken")
            except ValueError:
                token = None
        accepted = token == nucleus.token and not nucleus.refuse_connect
        nucleus._record(Call("CONNECT", {"authToken": token, "accepted": accepted}))
        self.send(es.rpc(es.CONNECT_ACK, es.CONNECTION_ACCEPTED if accepted else 0, 0))
        self.connected = accepted
        return accepted

    def _operation(self, message: es.Message) -> None:
        stream = message.stream_id
        operation = str(message.headers.get("operation", "")).removeprefix(PREFIX)
        try:
            request = json.loads(message.payload or b"{}")
        except ValueError:
            request = {}
        self.nucleus._record(Call(operation, request))
        delay = self.nucleus.delays.get(operation)
        if delay:
            time.sleep(delay)
        handler = self.nucleus.handlers.get(operation)
        if handler is None:
            body = {"error": "Unsupported Operation", "message": f"{operation} is an unsupported operation."}
            self.send(
                es.rpc(
                    es.APPLICATION_ERROR,
                    es.TERMINATE_STREAM,
                    stream,
                    json.dumps(body).encode(),
                    **{":content-type": "application/json"},
                )
            )
            return
        try:
            injected = self.nucleus.errors.get(operation)
            if injected is not None:
                raise injected
            response = handler(self, stream, request)
        except ModeledError as error:
            self.send(
                es.rpc(
                    es.APPLICATION_ERROR,
                    es.TERMINATE_STREAM,
                    stream,
                    json.dumps(error.body).encode(),
                    **{":content-type": "application/json", "service-model-type": PREFIX + error.shape},
                )
            )
            return
        streaming = operation.startswith("SubscribeTo")
        self.send(
            es.rpc(
                es.APPLICATION_MESSAGE,
                0 if streaming else es.TERMINATE_STREAM,
                stream,
                json.dumps(response).encode(),
                **{":content-type": "application/json", "service-model-type": f"{PREFIX}{operation}Response"},
            )
        )


class StandinNucleus:
    """Serve on `socket_path`, accepting clients that present `token` (the component's SVCUID)."""

    def __init__(self, socket_path: Path, token: str, component: str, configuration: dict[str, Any] | None = None):
        self.socket_path = socket_path
        self.token = token
        self.component = component
        self.configuration: dict[str, Any] = configuration or {}
        self.calls: list[Call] = []
        self.state: str | None = None
        self.shadows: dict[tuple[str, str], dict[str, Any]] = {}
        self.refuse_connect = False
        self.errors: dict[str, ModeledError] = {}
        self.delays: dict[str, float] = {}
        self.handlers: dict[str, Callable[[_Connection, int, dict], dict]] = {
            "UpdateState": self._update_state,
            "GetConfiguration": self._get_configuration,
            "SubscribeToConfigurationUpdate": self._subscribe_configuration,
            "PublishToTopic": self._publish_to_topic,
            "PublishToIoTCore": self._publish_to_iot_core,
            "UpdateThingShadow": self._update_thing_shadow,
        }
        self._lock = threading.Condition()
        self._connections: list[_Connection] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> StandinNucleus:
        self.socket_path.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        self._server.listen(16)
        self._thread = threading.Thread(target=self._accept, name="standin-nucleus", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            connection = _Connection(self, sock)
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=connection.serve, name="standin-connection", daemon=True).start()

    def stop(self) -> None:
        """Stop listening, drop every connection and remove the socket file (the nucleus went away)."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
            self._server.close()
            self._server = None
        self.drop_connections()
        if self._thread is not None:
            self._thread.join(5)
        self.socket_path.unlink(missing_ok=True)

    def drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    # Reading back what the client did ---------------------------------------------------------------------

    def calls_to(self, operation: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.operation == operation]

    def wait_for(self, predicate: Callable[[list[Call]], bool], timeout: float = 30.0) -> list[Call]:
        """Block until `predicate(calls)` holds; returns the calls."""
        deadline = time.time() + timeout
        with self._lock:
            while not predicate(self.calls):
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(
                        f"the nucleus did not see the expected calls in {timeout} s: "
                        f"{[c.operation for c in self.calls]}"
                    )
                self._lock.wait(remaining)
            return list(self.calls)

    # Configuration pushed by a deployment ---------------------------------------------------------------

    def update_configuration(self, key_path: list[str], value: Any) -> None:
        """Change the component's configuration and notify its subscribers (no values in the event)."""
        node = self.configuration
        for key in key_path[:-1]:
            node = node.setdefault(key, {})
        node[key_path[-1]] = value
        with self._lock:
            subscribers = [(c, s, p) for c in self._connections for s, p in c.subscriptions.items()]
        for connection, stream, watched in subscribers:
            if key_path[: len(watched)] == watched:
                event = {"configurationUpdateEvent": {"componentName": self.component, "keyPath": key_path}}
                connection.send(
                    es.rpc(
                        es.APPLICATION_MESSAGE,
                        0,
                        stream,
                        json.dumps(event).encode(),
                        **{
                            ":content-type": "application/json",
                            "service-model-type": PREFIX + "ConfigurationUpdateEvents",
                        },
                    )
                )

    # Operations (§4) -------------------------------------------------------------------------------------

    def _update_state(self, connection: _Connection, stream: int, request: dict) -> dict:
        if request.get("state") not in ("RUNNING", "ERRORED"):
            raise ModeledError("InvalidArgumentsError", f"Invalid state {request.get('state')!r}")
        self.state = request["state"]
        return {}

    def _resolve(self, request: dict) -> Any:
        if request.get("componentName") not in (None, self.component):
            raise ModeledError("ResourceNotFoundError", "Key not found", resourceType="Component")
        node: Any = self.configuration
        path = request.get("keyPath") or []
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise ModeledError("ResourceNotFoundError", "Key not found", resourceType="Configuration")
            node = node[key]
        return {path[-1]: node} if path and not isinstance(node, dict) else node

    def _get_configuration(self, connection: _Connection, stream: int, request: dict) -> dict:
        return {"componentName": self.component, "value": self._resolve(request)}

    def _subscribe_configuration(self, connection: _Connection, stream: int, request: dict) -> dict:
        self._resolve(request)
        connection.subscriptions[stream] = list(request.get("keyPath") or [])  # before the response (see spec)
        return {}

    def _publish_to_topic(self, connection: _Connection, stream: int, request: dict) -> dict:
        topic = request.get("topic")
        if not topic:
            raise ModeledError("InvalidArgumentsError", "Publish topic must not be null")
        if any(c in topic for c in "+#*"):
            raise ModeledError("InvalidArgumentsError", "Publish topic must not contain a wildcard.")
        message = request.get("publishMessage") or {}
        if len(message) != 1 or next(iter(message)) not in ("jsonMessage", "binaryMessage"):
            raise ModeledError("InvalidArgumentsError", "Exactly one of jsonMessage or binaryMessage is required")
        return {}

    def _publish_to_iot_core(self, connection: _Connection, stream: int, request: dict) -> dict:
        if not request.get("topicName"):
            raise ModeledError("InvalidArgumentsError", "Topic is required")
        if "payload" not in request:
            raise ModeledError("InvalidArgumentsError", "Payload is required")
        if request.get("qos") is None:
            raise ModeledError("InvalidArgumentsError", "QoS is required")
        if request["qos"] not in ("0", "1"):
            raise ModeledError("InvalidArgumentsError", f"Invalid QoS value: {request['qos']}")
        base64.b64decode(request["payload"], validate=True)
        return {}

    def _update_thing_shadow(self, connection: _Connection, stream: int, request: dict) -> dict:
        thing, shadow = request.get("thingName") or "", request.get("shadowName", "")
        if not thing or len(thing) > 128 or not SHADOW_NAME.fullmatch(thing):
            raise ModeledError("InvalidArgumentsError", "ThingName is invalid")
        if len(shadow) > 64 or not SHADOW_NAME.fullmatch(shadow):
            raise ModeledError("InvalidArgumentsError", "ShadowName is invalid")
        try:
            document = json.loads(base64.b64decode(request.get("payload", "")))
        except ValueError:
            raise ModeledError("InvalidArgumentsError", "Invalid JSON") from None
        if not isinstance(document.get("state"), dict):
            raise ModeledError("InvalidArgumentsError", "State node needs to be an object")
        current = self.shadows.get((thing, shadow), {"state": {}, "version": 0})
        _merge(current["state"], document["state"])
        current["version"] += 1
        current["timestamp"] = int(time.time())
        self.shadows[(thing, shadow)] = current
        return {"payload": base64.b64encode(json.dumps(current).encode()).decode()}


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Shadow semantics: objects merge key by key, null deletes a key, anything else replaces."""
    for key, value in update.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def error(shape: str, message: str, **fields: Any) -> ModeledError:
    """A modeled error to inject: `nucleus.errors["PublishToIoTCore"] = error("UnauthorizedError", "...")`."""
    return ModeledError(shape, message, **fields)
