"""Finds the CUDA toolkits on this machine and picks the one whose major version matches `cuda-ver`.

Two kinds are used:
- NVRTC from the `nvidia-cuda-nvrtc-cuXX` wheels, with the C++ headers of `nvidia-cuda-cccl-cuXX`
  (installed by the `lookout-edge[cuda11]` / `[cuda12]` extras);
- a local toolkit's `nvcc`: `$CUDA_HOME/bin/nvcc`, then `nvcc` on the PATH.

A device's driver loads cubins (SASS) made by any toolkit of its CUDA major version (CUDA minor-version
compatibility); a newer major makes code it cannot load, so a toolkit is never used across majors.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import regex

# The extra that installs a CUDA major's compiler (pyproject.toml keeps the two in step).
TOOLKIT_EXTRAS = {11: "cuda11", 12: "cuda12"}
NVCC_RELEASE = regex.compile(r"release (\d+)\.(\d+)")


@dataclass(frozen=True)
class CudaToolkit:
    """One CUDA compiler: NVRTC (a shared library) or nvcc (an executable)."""

    kind: str  # "nvrtc" | "nvcc"
    version: tuple[int, int]
    path: Path  # libnvrtc.so.* or bin/nvcc
    include_dirs: tuple[Path, ...] = ()
    origin: str = ""  # where it came from, for messages and the manifest

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def describe(self) -> str:
        name = "NVRTC" if self.kind == "nvrtc" else "nvcc"
        return f"{name} {self.version_text} ({self.origin or self.path})"


def _package_dir(module: str) -> Path | None:
    """The folder of an installed `nvidia.*` namespace package, without importing anything heavy."""
    try:
        package = __import__(module, fromlist=["__name__"])
    except ImportError:
        return None
    paths = list(getattr(package, "__path__", []))
    return Path(paths[0]) if paths else None


def _nvrtc_version(library: Path) -> tuple[int, int] | None:
    try:
        nvrtc = ctypes.CDLL(str(library))
    except OSError:
        return None
    major, minor = ctypes.c_int(), ctypes.c_int()
    if nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
        return None
    return major.value, minor.value


def _wheel_toolkits() -> list[CudaToolkit]:
    nvrtc_dir, cccl_dir = _package_dir("nvidia.cuda_nvrtc"), _package_dir("nvidia.cuda_cccl")
    if nvrtc_dir is None:
        return []
    includes = tuple(p for p in (cccl_dir and cccl_dir / "include", nvrtc_dir / "include") if p and p.is_dir())
    found = []
    for library in sorted(glob.glob(str(nvrtc_dir / "lib" / "libnvrtc.so.*"))):
        version = _nvrtc_version(Path(library))
        if version is not None:
            origin = f"nvidia-cuda-nvrtc-cu{version[0]} wheel"
            found.append(CudaToolkit("nvrtc", version, Path(library), includes, origin))
    return found


def _nvcc_version(nvcc: Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = NVCC_RELEASE.search(out)
    return (int(match[1]), int(match[2])) if match else None


def _local_toolkits() -> list[CudaToolkit]:
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append((Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc", f"CUDA_HOME={os.environ['CUDA_HOME']}"))
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append((Path(on_path), f"{on_path} on the PATH"))
    found, seen = [], set()
    for nvcc, origin in candidates:
        if not nvcc.is_file() or nvcc.resolve() in seen:
            continue
        seen.add(nvcc.resolve())
        version = _nvcc_version(nvcc)
        if version is not None:
            found.append(CudaToolkit("nvcc", version, nvcc, origin=origin))
    return found


@cache
def installed_toolkits() -> tuple[CudaToolkit, ...]:
    """Every usable CUDA compiler here: the wheels' NVRTC first, then local nvcc."""
    return (*_wheel_toolkits(), *_local_toolkits())


def pick_toolkit(cuda_ver: str, toolkits: tuple[CudaToolkit, ...] | None = None) -> CudaToolkit | None:
    """The toolkit for `cuda-ver` x.y: same major; the same minor when there is one, else the newest minor."""
    wanted = tuple(int(p) for p in cuda_ver.split("."))
    same_major = [t for t in (installed_toolkits() if toolkits is None else toolkits) if t.version[0] == wanted[0]]
    if not same_major:
        return None
    exact = [t for t in same_major if t.version == wanted]
    return (exact or sorted(same_major, key=lambda t: t.version))[-1]


def missing_toolkit_message(cuda_ver: str, toolkits: tuple[CudaToolkit, ...] | None = None) -> str:
    """What to install when no toolkit matches `cuda-ver`'s major version."""
    major = int(cuda_ver.split(".")[0])
    present = ", ".join(t.describe() for t in (installed_toolkits() if toolkits is None else toolkits)) or "none"
    extra = TOOLKIT_EXTRAS.get(major)
    install = (
        f"pip install 'lookout-edge[{extra}]' (nvidia-cuda-nvrtc-cu{major} and nvidia-cuda-cccl-cu{major})"
        if extra
        else f"a CUDA {major}.x toolkit, with CUDA_HOME pointing at it"
    )
    return (
        f"cuda-ver {cuda_ver} needs a CUDA {major}.x compiler (the device's driver cannot load code from another "
        f"major version); found: {present}. Install {install}"
    )
