"""POSIX shared-memory segments named in requests: the input image and the output mask.

Segments are read with one `pread` straight into the image buffer and written with one `pwrite`. They
are deliberately not mmap-ed: a client that shrinks its segment during a call must get an error, not
crash the agent with SIGBUS.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.errors import InvalidArgument, PermissionDenied, quoted
from edge_agent.serving.peer_relay import Caller

SHM_ROOT = Path("/dev/shm")  # where Linux's shm_open keeps segments
NAME_MAX = 255


@dataclass(frozen=True)
class SegmentRef:
    """A SharedMemoryHandle: segment name, buffer size and its offset inside the segment."""

    name: str
    size: int
    offset: int


def _segment_path(ref: SegmentRef, field: str) -> Path:
    bare = ref.name[1:] if ref.name.startswith("/") else ref.name
    if not bare or "/" in bare or bare in (".", "..") or len(bare) > NAME_MAX or "\0" in bare:
        raise InvalidArgument(
            f"{field}.name {quoted(ref.name)} is not a POSIX shared-memory name: use '/name' with no other '/' and "
            f"at most {NAME_MAX} characters, as passed to shm_open"
        )
    return SHM_ROOT / bare


@contextmanager
def _open_segment(ref: SegmentRef, field: str, needed: int, writable: bool, caller: Caller | None) -> Iterator[int]:
    path = _segment_path(ref, field)
    if ref.size < needed:
        raise InvalidArgument(f"{field}.size is {ref.size} bytes but width*height*3 = {needed} bytes are needed")
    # O_NONBLOCK: a FIFO named as a segment must not block the handler in open() (fstat refuses it below).
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InvalidArgument(f"{field}.name: no shared-memory segment named {ref.name!r} exists") from None
    except PermissionError:
        access = "write" if writable else "read"
        raise InvalidArgument(
            f"{field}.name: the agent may not {access} segment {ref.name!r}; create it with read/write access for "
            "the agent's user or group (e.g. mode 0660 with the agent's group)"
        ) from None
    except OSError as exc:
        raise InvalidArgument(f"{field}.name: cannot open segment {ref.name!r}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"{field}.name: {ref.name!r} is not a shared-memory segment")
        if caller is not None and not caller.may(info.st_uid, info.st_gid, info.st_mode, writable):
            raise PermissionDenied(
                f"{field}.name: the caller ({caller.describe()}) may not {'write' if writable else 'read'} segment "
                f"{ref.name!r} (owner uid {info.st_uid}, gid {info.st_gid}, mode {stat.S_IMODE(info.st_mode):04o}); "
                "the agent reads and writes only segments its caller could"
            )
        if ref.offset + ref.size > info.st_size:
            raise InvalidArgument(
                f"{field}: offset {ref.offset} + size {ref.size} = {ref.offset + ref.size} bytes lies beyond the end "
                f"of segment {ref.name!r} ({info.st_size} bytes)"
            )
        yield fd
    finally:
        os.close(fd)


def row_stride(ref: SegmentRef, field: str, width: int, height: int) -> int:
    """Bytes per image row: width*3 for a packed image, or size/height when rows are padded (GStreamer pads
    RGB rows to 4 bytes: width 225 → 676-byte rows), i.e. size = stride*height with stride ≥ width*3."""
    packed = width * 3
    if ref.size == packed * height:
        return packed
    if ref.size % height == 0 and ref.size // height >= packed:
        return ref.size // height
    raise InvalidArgument(
        f"{field}.size is {ref.size} bytes but width*height*3 = {width}*{height}*3 = {packed * height} bytes for a "
        f"packed RGB888 image, or stride*height with a row stride ≥ width*3 = {packed} bytes when rows are padded"
    )


def read_image(ref: SegmentRef, field: str, width: int, height: int, caller: Caller | None = None) -> np.ndarray:
    """Read an RGB888 image of `size` bytes (packed, or with padded rows: `row_stride`); returns an (H, W, 3)
    uint8 array (a view skipping the padding when rows are padded). `caller`: who asked (None: not checked)."""
    stride = row_stride(ref, field, width, height)
    rows = np.empty((height, stride), dtype=np.uint8)
    with _open_segment(ref, field, ref.size, writable=False, caller=caller) as fd:
        got = os.preadv(fd, [memoryview(rows).cast("B")], ref.offset)
    if got != ref.size:
        raise InvalidArgument(f"{field}: segment {ref.name!r} shrank during the call ({got} of {ref.size} bytes read)")
    return rows[:, : width * 3].reshape(height, width, 3)


def check_mask_target(ref: SegmentRef, field: str, width: int, height: int, caller: Caller | None = None) -> None:
    """Fail before inference when the mask would not fit into, or may not be written to, the segment."""
    with _open_segment(ref, field, width * height * 3, writable=True, caller=caller):
        pass


def write_mask(ref: SegmentRef, field: str, mask: np.ndarray, caller: Caller | None = None) -> int:
    """Write an (H, W, 3) uint8 mask at the handle's offset; returns the bytes written."""
    data = memoryview(np.ascontiguousarray(mask)).cast("B")
    with _open_segment(ref, field, len(data), writable=True, caller=caller) as fd:
        written = os.pwrite(fd, data, ref.offset)
    if written != len(data):
        raise InvalidArgument(f"{field}: only {written} of {len(data)} mask bytes fit into segment {ref.name!r}")
    return written
