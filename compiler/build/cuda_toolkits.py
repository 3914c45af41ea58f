"""Finds the CUDA toolkits on this machine and picks the one whose major version matches `cuda-ver`.

Two kinds are used:
- NVRTC from the `nvidia-cuda-nvrtc-cuXX` wheels, with the C++ headers of `nvidia-cuda-cccl-cuXX`: installed
  side by side, one folder per CUDA major, in the data directory's `cuda-toolkits/` by
  `lookout-edge install-cuda-toolkit` (so one installation builds for every major its fleet has), or into the
  environment itself by the `lookout-edge[cuda11]` / `[cuda12]` extras (one of them: they share a folder);
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
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import regex

# What `install-cuda-toolkit` installs per CUDA major; pyproject.toml's cuda11/cuda12 extras name the same.
TOOLKIT_WHEELS = {
    11: ("nvidia-cuda-nvrtc-cu11>=11.8,<12", "nvidia-cuda-cccl-cu11>=11.8,<12"),
    12: ("nvidia-cuda-nvrtc-cu12>=12.9,<13", "nvidia-cuda-cccl-cu12>=12.9,<13"),
}
TOOLKITS_FOLDER = "cuda-toolkits"  # in the data directory: cuda11/, cuda12/ (pip --target folders)
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


def _wheel_toolkits(nvrtc_dir: Path | None, cccl_dir: Path | None, where: str) -> list[CudaToolkit]:
    if nvrtc_dir is None:
        return []
    includes = tuple(p for p in (cccl_dir and cccl_dir / "include", nvrtc_dir / "include") if p and p.is_dir())
    found = []
    for library in sorted(glob.glob(str(nvrtc_dir / "lib" / "libnvrtc.so.*"))):
        version = _nvrtc_version(Path(library))
        if version is not None:
            origin = f"nvidia-cuda-nvrtc-cu{version[0]} wheel{where}"
            found.append(CudaToolkit("nvrtc", version, Path(library), includes, origin))
    return found


def toolkits_dir(data_dir: Path) -> Path:
    return data_dir / TOOLKITS_FOLDER


def _data_dir_toolkits(data_dir: Path | None) -> list[CudaToolkit]:
    if data_dir is None:
        return []
    found = []
    for folder in sorted(toolkits_dir(data_dir).glob("cuda*")):
        nvrtc = folder / "nvidia" / "cuda_nvrtc"
        cccl = folder / "nvidia" / "cuda_cccl"
        found += _wheel_toolkits(nvrtc if nvrtc.is_dir() else None, cccl, f" in {folder}")
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
def installed_toolkits(data_dir: Path | None = None) -> tuple[CudaToolkit, ...]:
    """Every usable CUDA compiler here: the data directory's toolkits, the environment's NVRTC wheels, local nvcc."""
    environment = _wheel_toolkits(_package_dir("nvidia.cuda_nvrtc"), _package_dir("nvidia.cuda_cccl"), "")
    return (*_data_dir_toolkits(data_dir), *environment, *_local_toolkits())


def pick_toolkit(cuda_ver: str, toolkits: tuple[CudaToolkit, ...]) -> CudaToolkit | None:
    """The toolkit for `cuda-ver` x.y among `toolkits`: same major; the same minor when there is one, else the
    newest minor."""
    wanted = tuple(int(p) for p in cuda_ver.split("."))
    same_major = [t for t in toolkits if t.version[0] == wanted[0]]
    if not same_major:
        return None
    exact = [t for t in same_major if t.version == wanted]
    return (exact or sorted(same_major, key=lambda t: t.version))[-1]


def missing_toolkit_message(cuda_ver: str, toolkits: tuple[CudaToolkit, ...]) -> str:
    """What to install when no toolkit matches `cuda-ver`'s major version."""
    major = int(cuda_ver.split(".")[0])
    present = ", ".join(t.describe() for t in toolkits) or "none"
    install = (
        f"it with `lookout-edge install-cuda-toolkit {major}` (NVRTC and headers, beside any other CUDA major)"
        if major in TOOLKIT_WHEELS
        else f"a CUDA {major}.x toolkit, with CUDA_HOME pointing at it"
    )
    return (
        f"cuda-ver {cuda_ver} needs a CUDA {major}.x compiler (the device's driver cannot load code from another "
        f"major version); found: {present}. Install {install}"
    )


def install_toolkit(major: int, data_dir: Path, run: Callable[[list[str]], int] = subprocess.call) -> Path:
    """pip-install CUDA `major`'s NVRTC and headers into the data directory's own folder for that major."""
    target = toolkits_dir(data_dir) / f"cuda{major}"
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(staging), *TOOLKIT_WHEELS[major]]
    if run(command) != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(f"pip could not install {' '.join(TOOLKIT_WHEELS[major])}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # a folder appears whole or not at all
    installed_toolkits.cache_clear()
    return target
