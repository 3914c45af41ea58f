"""The arm64 Python under qemu user-mode emulation, in the sysroot scripts/arm64-sysroot.sh builds (.ci/run does)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SYSROOT = Path(os.environ.get("LOOKOUT_EDGE_ARM64_SYSROOT", Path.home() / ".cache/lookout-edge/arm64-sysroot"))
SYSROOT_MARKER = ".complete-agent"  # scripts/arm64-sysroot.sh writes it last


def arm64_python() -> list[str]:
    """The command that runs the sysroot's Python 3.11 under qemu; skips the test where either is missing."""
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static (Debian qemu-user-static) is not installed; .ci/run installs it")
    if not (SYSROOT / SYSROOT_MARKER).exists():
        pytest.skip(f"no arm64 sysroot at {SYSROOT}; build it with scripts/arm64-sysroot.sh (.ci/run does)")
    return ["qemu-aarch64-static", "-L", str(SYSROOT), str(SYSROOT / "usr/bin/python3.11")]


def arm64_env(repo: Path) -> dict[str, str]:
    """The environment of an emulated process: the sysroot's packages, then this repository."""
    return {"PYTHONPATH": f"{SYSROOT / 'site'}:{repo}", "PATH": "/usr/bin:/bin"}
