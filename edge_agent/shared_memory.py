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

from edge_agent.errors import InvalidArgument

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
            f"{field}.name {ref.name!r} is not a POSIX shared-memory name: use '/name' with no other '/' "
            f"and at most {NAME_MAX} characters, as passed to shm_open"
        )
    return SHM_ROOT / bare


@contextmanager
def _open_segment(ref: SegmentRef, field: str, needed: int, writable: bool) -> Iterator[int]:
    path = _segment_path(ref, field)
    if ref.size < needed:
        raise InvalidArgument(f"{field}.size is {ref.size} bytes but width*height*3 = {needed} bytes are needed")
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
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
        if ref.offset + ref.size > info.st_size:
            raise InvalidArgument(
                f"{field}: offset {ref.offset} + size {ref.size} = {ref.offset + ref.size} bytes lies beyond the end "
                f"of segment {ref.name!r} ({info.st_size} bytes)"
            )
        yield fd
    finally:
        os.close(fd)


def read_image(ref: SegmentRef, field: str, width: int, height: int) -> np.ndarray:
    """Read an RGB888 image of exactly `size` = width*height*3 bytes; returns an (H, W, 3) uint8 array."""
    needed = width * height * 3
    if ref.size != needed:
        raise InvalidArgument(
            f"{field}.size is {ref.size} bytes but width*height*3 = {width}*{height}*3 = {needed}: the buffer must "
            "hold exactly one packed RGB888 image"
        )
    image = np.empty((height, width, 3), dtype=np.uint8)
    with _open_segment(ref, field, needed, writable=False) as fd:
        got = os.preadv(fd, [memoryview(image).cast("B")], ref.offset)
    if got != needed:
        raise InvalidArgument(f"{field}: segment {ref.name!r} shrank during the call ({got} of {needed} bytes read)")
    return image


def check_mask_target(ref: SegmentRef, field: str, width: int, height: int) -> None:
    """Fail before inference when the mask would not fit into, or may not be written to, the segment."""
    with _open_segment(ref, field, width * height * 3, writable=True):
        pass


def write_mask(ref: SegmentRef, field: str, mask: np.ndarray) -> int:
    """Write an (H, W, 3) uint8 mask at the handle's offset; returns the bytes written."""
    data = memoryview(np.ascontiguousarray(mask)).cast("B")
    with _open_segment(ref, field, len(data), writable=True) as fd:
        written = os.pwrite(fd, data, ref.offset)
    if written != len(data):
        raise InvalidArgument(f"{field}: only {written} of {len(data)} mask bytes fit into segment {ref.name!r}")
    return written
