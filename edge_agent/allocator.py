"""glibc malloc settings for a process whose requests carry image-sized buffers.

By default glibc serves every block above 128 KiB (a threshold that adapts, up to 32 MiB) with a fresh
mmap and hands it back on free, so each request pays page faults again for its image, mask and gRPC message
buffers: ~5,800 faults and ~12 ms of a 1024² DetectAnomalies call sent as bytes. Keeping blocks up to
16 MiB in the heap (a 2048² image is 12 MiB) and trimming only above 64 MiB of free heap reuses those
pages from one request to the next. Larger blocks (4096² images, 48 MiB) still come from mmap and go back to
the system when freed, and two arenas bound what idle threads can hold on to.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
HEAP_BLOCK_LIMIT = 16 << 20
TRIM_THRESHOLD = 64 << 20
ARENAS = 2
OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")


def keep_image_buffers() -> bool:
    """Apply the settings; False (nothing changed) where the C library is not glibc, or where the operator
    set glibc's own MALLOC_* variables, which then stay in charge."""
    if any(name in os.environ for name in OPERATOR_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, ARENAS))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
