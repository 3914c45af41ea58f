"""Compiles tuning candidates in forked child processes, a few at a time, each within a time limit.

LLVM can spend many minutes on a pathological candidate (a huge unrolled loop nest), and a compile running
in the tuning process cannot be interrupted: one such candidate would stall the search past its time cap.
A forked child starts in milliseconds with TVM already loaded (a fresh worker process needs ~30 s on 2 cores
just to start), writes the candidate's shared library and exits, or is killed when its time is up.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

POLL_S = 0.005


@dataclass(frozen=True)
class Built:
    """One candidate: its shared library, or why there is none."""

    library: str | None
    error: str | None = None


def failure_text(exc: BaseException) -> str:
    """How a failed trial reads in MetaSchedule's records: the exception type and the end of its message."""
    return f"{type(exc).__name__}: {str(exc)[-300:]}"


def _compile_in_child(mod: Any, target: Any, library: str) -> NoReturn:
    status = 0
    try:
        import tvm

        tvm.compile(mod, target).export_library(library)
    except BaseException as exc:  # reported to the parent through the file system, like the library itself
        Path(library + ".error").write_text(failure_text(exc))
        status = 1
    os._exit(status)


def _outcome(library: str, status: int) -> Built:
    if os.waitstatus_to_exitcode(status) == 0 and os.path.isfile(library):
        return Built(library)
    error = Path(library + ".error")
    return Built(None, error.read_text() if error.is_file() else f"the compile exited with status {status}")


def build_candidates(
    candidates: list[tuple[Any, Any]], folder: str, limit_s: float, deadline: float, processes: int
) -> list[Built]:
    """Compile each (IRModule, Target) into `folder`, at most `processes` at once; a compile is stopped after
    `limit_s` seconds, or at `deadline` (time.time()), whichever comes first, and counts as failed."""
    results: list[Built | None] = [None] * len(candidates)
    waiting = list(enumerate(candidates))[::-1]
    running: dict[int, tuple[int, str, float]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < processes:
                index, (mod, target) = waiting.pop()
                library = os.path.join(tempfile.mkdtemp(dir=folder, prefix=f"{index}-"), "candidate.so")
                pid = os.fork()
                if pid == 0:
                    _compile_in_child(mod, target, library)
                running[pid] = (index, library, min(time.time() + limit_s, deadline))
            time.sleep(POLL_S)
            for pid, (index, library, ends) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    results[index] = _outcome(library, status)
                elif time.time() > ends:
                    _stop(pid)
                    results[index] = Built(None, f"compiling took longer than {limit_s:g} s or the tuning time left")
                else:
                    continue
                del running[pid]
    finally:  # an error here (fork refused, interrupt) must not leave compiles running on their own
        for pid in running:
            _stop(pid)
    return [result for result in results if result is not None]


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # it had already ended and been reaped
        pass
