"""A bounded pool of detached packaging worker processes, coordinated through lock files.

Each worker holds one of `max_workers` slot locks (flock) while it drains the queue, so the pool
never exceeds its size, and a worker that dies releases its slot with its process.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compiler.settings import Settings


class WorkerPool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _slot_path(self, index: int) -> Path:
        return self.settings.workers_dir / f"slot-{index}.lock"

    @contextmanager
    def slot(self) -> Iterator[int | None]:
        """Hold a free worker slot for the duration of the block; yields None when all are taken."""
        self.settings.workers_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.settings.max_workers):
            fd = os.open(self._slot_path(index), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield index
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        yield None

    def ensure_worker(self) -> None:
        """Start a detached worker if a slot is free (a busy worker picks queued jobs up itself)."""
        if self.busy_slots() >= self.settings.max_workers:
            return
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log = (self.settings.logs_dir / "worker.log").open("ab")
        subprocess.Popen(
            [sys.executable, "-m", "compiler.jobs.worker", "--data-dir", str(self.settings.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **os.environ,
                **self.settings.to_env(),  # the worker sees this service's settings, however they were made
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
                ),
            },
        )
        log.close()

    def busy_slots(self) -> int:
        """How many workers are alive now (used by tests to wait for the pool to drain)."""
        self.settings.workers_dir.mkdir(parents=True, exist_ok=True)
        busy = 0
        for index in range(self.settings.max_workers):
            fd = os.open(self._slot_path(index), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                busy += 1
            finally:
                os.close(fd)
        return busy
