"""AWS event-stream framing (specs/greengrass.md §3.1–3.3): messages with a CRC'd prelude, typed headers and
a payload, as the Greengrass IPC client and nucleus exchange them."""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

PRELUDE = 12
MAX_MESSAGE = 16 << 20  # older awscrt builds refuse more

# RPC message types and flags (§3.3)
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK, PROTOCOL_ERROR, INTERNAL_ERROR = (
    range(8)
)
CONNECTION_ACCEPTED = 1
TERMINATE_STREAM = 2

BOOL_TRUE, BOOL_FALSE, BYTE, INT16, INT32, INT64, BYTE_BUF, STRING, TIMESTAMP, UUID = range(10)


class FramingError(Exception):
    """Bytes that are not a valid event-stream message (bad CRC, lengths or header type)."""


@dataclass
class Message:
    headers: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def message_type(self) -> int:
        return self.headers.get(":message-type", -1)

    @property
    def flags(self) -> int:
        return self.headers.get(":message-flags", 0)

    @property
    def stream_id(self) -> int:
        return self.headers.get(":stream-id", 0)


def _encode_header(name: str, value: Any) -> bytes:
    raw_name = name.encode()
    head = bytes([len(raw_name)]) + raw_name
    if isinstance(value, bool):
        return head + bytes([BOOL_TRUE if value else BOOL_FALSE])
    if isinstance(value, int):
        return head + bytes([INT32]) + struct.pack(">i", value)
    if isinstance(value, bytes):
        return head + bytes([BYTE_BUF]) + struct.pack(">H", len(value)) + value
    if isinstance(value, uuid.UUID):
        return head + bytes([UUID]) + value.bytes
    data = str(value).encode()
    return head + bytes([STRING]) + struct.pack(">H", len(data)) + data


def encode(headers: dict[str, Any], payload: bytes = b"") -> bytes:
    """One framed message; ints are written as INT32 (what the RPC headers need)."""
    encoded = b"".join(_encode_header(name, value) for name, value in headers.items())
    total = PRELUDE + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def rpc(message_type: int, flags: int, stream_id: int, payload: bytes = b"", **headers: Any) -> bytes:
    """An RPC message: the caller's headers, then :message-type, :message-flags and :stream-id."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    named.update({":message-type": message_type, ":message-flags": flags, ":stream-id": stream_id})
    return encode(named, payload)


def _decode_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    at = 0
    fixed = {BYTE: ">b", INT16: ">h", INT32: ">i", INT64: ">q", TIMESTAMP: ">q"}
    while at < len(data):
        size = data[at]
        name = data[at + 1 : at + 1 + size].decode()
        at += 1 + size
        kind = data[at]
        at += 1
        if kind in (BOOL_TRUE, BOOL_FALSE):
            value: Any = kind == BOOL_TRUE
        elif kind in fixed:
            width = struct.calcsize(fixed[kind])
            (value,) = struct.unpack(fixed[kind], data[at : at + width])
            at += width
        elif kind in (BYTE_BUF, STRING):
            (length,) = struct.unpack(">H", data[at : at + 2])
            raw = data[at + 2 : at + 2 + length]
            value = raw.decode() if kind == STRING else raw
            at += 2 + length
        elif kind == UUID:
            value = uuid.UUID(bytes=data[at : at + 16])
            at += 16
        else:
            raise FramingError(f"unknown header value type {kind} for header {name!r}")
        headers[name] = value
    return headers


class Decoder:
    """Feed bytes as they arrive; yields complete, CRC-checked messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= PRELUDE:
            total, header_length, prelude_crc = struct.unpack(">III", self._buffer[:PRELUDE])
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise FramingError("prelude CRC mismatch")
            if total < PRELUDE + 4 + header_length or total > MAX_MESSAGE:
                raise FramingError(f"bad message length {total}")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack(">I", frame[-4:])
            if zlib.crc32(frame[:-4]) != message_crc:
                raise FramingError("message CRC mismatch")
            headers = _decode_headers(frame[PRELUDE : PRELUDE + header_length])
            messages.append(Message(headers, frame[PRELUDE + header_length : -4]))
        return messages
