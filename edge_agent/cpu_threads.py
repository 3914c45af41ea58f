"""How many threads TVM's CPU kernels run on: one per physical core this process may use.

Left alone, TVM sizes its thread pool from the logical CPU count, halved on x86 on the assumption that every
core has two hyper-threads. On a machine without SMT (most cloud VMs, this project's 2-core CI and benchmark
machine) that leaves half the cores idle: the reference model ran 45 ms on one thread instead of 25 ms on two.
"""

from __future__ import annotations

import os
from pathlib import Path

THREADS_ENV = "TVM_NUM_THREADS"
OPERATOR_ENVS = (THREADS_ENV, "OMP_NUM_THREADS")  # TVM honours both; an operator's choice wins
SYSFS_CPUS = Path("/sys/devices/system/cpu")


def physical_cores(sysfs_cpus: Path = SYSFS_CPUS) -> int:
    """Distinct physical cores among the CPUs this process may run on (hyper-threads of one core count once);
    the number of usable CPUs where the kernel does not describe its topology."""
    cpus = os.sched_getaffinity(0)
    cores = set()
    for cpu in cpus:
        topology = sysfs_cpus / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def use_physical_cores() -> int:
    """Size TVM's thread pools to the physical cores (unless the operator set TVM_NUM_THREADS or
    OMP_NUM_THREADS) and return the thread count TVM will use. TVM reads it when a thread first runs a
    parallel kernel, so call this before any TVM module runs."""
    for name in OPERATOR_ENVS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    count = physical_cores()
    os.environ[THREADS_ENV] = str(count)
    return count
