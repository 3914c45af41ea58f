"""Scratch folders of packaging workers, under `<data dir>/work/` and named by the worker's pid, so that the
folders a killed worker left behind (a compile's bundle, a tuning run's candidates: hundreds of MB) are
removed when the next worker starts."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_OWNER = re.compile(r"pid(\d+)-")


def scratch_folder(data_dir: Path, purpose: str) -> tempfile.TemporaryDirectory:
    """A folder removed when the `with` block ends; named `<purpose>-pid<this process>-…`."""
    root = data_dir / "work"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=root, prefix=f"{purpose}-pid{os.getpid()}-")


def remove_orphaned(data_dir: Path, is_live_worker: Callable[[int], bool]) -> list[Path]:
    """Remove the scratch folders whose worker is gone; returns them."""
    removed = []
    root = data_dir / "work"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        owner = _OWNER.search(folder.name)
        if owner is None or int(owner.group(1)) == os.getpid() or is_live_worker(int(owner.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
