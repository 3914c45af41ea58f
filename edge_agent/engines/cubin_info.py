"""Reads which GPU architecture a cubin targets and which CUDA toolkit made it, from its ELF headers.

Two layouts exist: toolkits up to CUDA 12 write ELF OS/ABI 0x33 (ABI version 7) with the architecture in the
low byte of e_flags and the toolkit version ×10 in e_version; CUDA 13 writes OS/ABI 0x41 (ABI version 8)
with both in the `.note.nv.cuinfo` note.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELF_MAGIC = b"\x7fELF"
EM_CUDA = 190
OSABI_CUDA_LEGACY = 0x33
OSABI_CUDA_V2 = 0x41
CUINFO_SECTION = b".note.nv.cuinfo"


class CubinError(ValueError):
    """Data that is not a CUDA cubin this reader understands."""


@dataclass(frozen=True)
class CubinInfo:
    arch: str  # e.g. "sm_72"
    toolkit: tuple[int, int]  # e.g. (11, 8)

    @property
    def toolkit_text(self) -> str:
        return f"{self.toolkit[0]}.{self.toolkit[1]}"


def _sections(data: bytes) -> dict[bytes, bytes]:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    sections = {}
    for name_index, _type, _flags, _addr, offset, size, *_ in headers:
        name = data[names_offset + name_index : data.index(b"\0", names_offset + name_index)]
        sections[name] = data[offset : offset + size]
    return sections


def _cuinfo(data: bytes) -> tuple[int, int]:
    note = _sections(data).get(CUINFO_SECTION)
    if note is None:
        raise CubinError("a CUDA 13-style cubin without its .note.nv.cuinfo section")
    namesz, descsz, _type = struct.unpack_from("<III", note, 0)
    desc = note[12 + (namesz + 3) // 4 * 4 :][:descsz]
    _layout, sm, toolkit = struct.unpack_from("<HHH", desc, 0)
    return sm, toolkit


def read_cubin(data: bytes) -> CubinInfo:
    """Architecture and toolkit of a 64-bit little-endian cubin."""
    if data[:4] != ELF_MAGIC or data[4] != 2 or data[5] != 1:
        raise CubinError("not a 64-bit little-endian ELF file")
    (machine,) = struct.unpack_from("<H", data, 0x12)
    if machine != EM_CUDA:
        raise CubinError(f"ELF machine {machine} is not NVIDIA CUDA ({EM_CUDA})")
    osabi = data[7]
    if osabi == OSABI_CUDA_LEGACY:
        (version,) = struct.unpack_from("<I", data, 0x14)
        (flags,) = struct.unpack_from("<I", data, 0x30)
        sm, toolkit = flags & 0xFF, version
    elif osabi == OSABI_CUDA_V2:
        sm, toolkit = _cuinfo(data)
    else:
        raise CubinError(f"unknown CUDA ELF OS/ABI 0x{osabi:x}")
    return CubinInfo(arch=f"sm_{sm}", toolkit=divmod(toolkit, 10))
