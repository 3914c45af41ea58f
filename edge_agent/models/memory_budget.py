"""How much memory running models may take: an estimate per model and the agent's budget.

Measured on the reference model (56 MiB library): loading the first VM adds about 2× the library size
(the mapped library plus its parameters copied into tensors), each further VM about 1× more, and the
first inference about 20 MiB of activations. `estimate_bytes` follows that shape with a margin.
"""

from __future__ import annotations

import threading

from edge_agent.bundle.reader import Bundle
from edge_agent.errors import Overloaded

MIB = 1 << 20
WORKSPACE_PER_WORKER = 32 * MIB


def estimate_bytes(bundle: Bundle, workers: int) -> int:
    library = max((e.library.stat().st_size for e in bundle.engines if e.library is not None), default=0)
    return library + workers * (library + WORKSPACE_PER_WORKER)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemoryBudget:
    """Reservations of the models that are loaded or loading, against a limit (0 = only MemAvailable)."""

    def __init__(self, limit_bytes: int = 0) -> None:
        self.limit_bytes = limit_bytes
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()

    def reserve(self, owner: str, amount: int, check: bool = True) -> None:
        """Reserve `amount` for `owner`, or raise Overloaded saying what does not fit (unless `check` is off,
        for a version swap of a model that already runs)."""
        with self._lock:
            if not check:
                self._reserved[owner] = amount
                return
            in_use = sum(v for k, v in self._reserved.items() if k != owner)
            if self.limit_bytes and in_use + amount > self.limit_bytes:
                raise Overloaded(
                    f"starting '{owner}' needs about {amount // MIB} MiB, but the agent's memory budget is "
                    f"{self.limit_bytes // MIB} MiB and running models hold {in_use // MIB} MiB; stop a model or "
                    "raise MemoryBudgetMiB"
                )
            free = available_bytes()
            if free is not None and amount > free:
                raise Overloaded(
                    f"starting '{owner}' needs about {amount // MIB} MiB, but only {free // MIB} MiB of memory are "
                    "available on this device; stop a model or free memory"
                )
            self._reserved[owner] = amount

    def release(self, owner: str) -> None:
        with self._lock:
            self._reserved.pop(owner, None)
