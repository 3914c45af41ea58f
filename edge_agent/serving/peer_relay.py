"""Who is calling: the public Unix socket, with each connection's peer credentials.

gRPC's Python server does not tell a handler who is at the other end of a Unix socket (grpc/grpc#15511,
#28755). So the agent's gRPC server listens on a socket in a private folder, and this relay owns the public
one: it accepts each connection, reads the kernel's record of the connecting process (`SO_PEERCRED`: pid, uid,
gid; its supplementary groups from /proc), and connects onward from a socket bound to a name of its own in
the private folder. gRPC reports that name as the call's peer (`unix:<name>`), which `caller` turns back into
the credentials. Bytes are relayed unchanged, one thread per direction; connections beyond MAX_CONNECTIONS
are closed at once.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 256
CHUNK = 1 << 18
UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Caller:
    """The process at the other end of a connection, as the kernel recorded it at connect()."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]

    def may(self, owner: int, group: int, mode: int, write: bool) -> bool:
        """Whether this caller could itself open a file with that owner, group and mode (read, or read-write)."""
        if self.uid == 0:
            return True
        shift = 6 if self.uid == owner else 3 if group == self.gid or group in self.groups else 0
        needed = 0o6 if write else 0o4
        return (mode >> shift) & needed == needed

    def describe(self) -> str:
        return f"uid {self.uid}, gid {self.gid}, pid {self.pid}"


def _supplementary_groups(pid: int) -> frozenset[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return frozenset(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return frozenset()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    buffer = memoryview(bytearray(CHUNK))
    try:
        while True:
            count = source.recv_into(buffer)
            if not count:
                break
            sink.sendall(buffer[:count])
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class PeerRelay:
    """The public socket at `public` (created with `mode`), relaying to the gRPC server's private socket."""

    def __init__(self, public: Path, mode: int) -> None:
        self.public = public
        self._folder = Path(tempfile.mkdtemp(prefix="lfv-agent-"))  # 0700: only the agent connects here
        self.internal = self._folder / "grpc.sock"
        self._mode = mode
        self._callers: dict[str, Caller] = {}
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        """Listen on the public socket (the gRPC server must already listen on `internal`)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o777 & ~self._mode)  # the socket file is born with its mode, never wider
        try:
            listener.bind(str(self.public))
        finally:
            os.umask(previous)
        os.chmod(self.public, self._mode)
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, name="peer-relay", daemon=True).start()

    def caller(self, peer: str) -> Caller | None:
        """The credentials behind a gRPC peer string (`context.peer()`); None for a peer this relay did not make."""
        with self._lock:
            return self._callers.get(peer.removeprefix("unix:"))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                self._connect(client)
            except OSError as exc:
                log.warning("dropped a connection on %s: %s", self.public, exc)
                client.close()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            full = len(self._callers) >= MAX_CONNECTIONS
        if full:
            log.warning("refused a connection on %s: %d connections are open", self.public, MAX_CONNECTIONS)
            client.close()
            return
        pid, uid, gid = UCRED.unpack(client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))
        caller = Caller(pid, uid, gid, _supplementary_groups(pid))
        name = str(self._folder / f"c{next(self._sequence)}")
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.bind(name)
            upstream.connect(str(self.internal))
        except OSError:
            upstream.close()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)  # the name stays the socket's address; the file is not needed
        with self._lock:
            self._callers[name] = caller
        threading.Thread(target=self._relay, args=(client, upstream, name), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket, name: str) -> None:
        inbound = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
        inbound.start()
        _pump(upstream, client)
        inbound.join()
        client.close()
        upstream.close()
        with self._lock:
            self._callers.pop(name, None)

    def stop_accepting(self) -> None:
        """Refuse new connections (open ones go on until the gRPC server closes them)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def remove_folder(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.internal.unlink()
        with contextlib.suppress(OSError):
            self._folder.rmdir()
