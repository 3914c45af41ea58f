"""TVM's CPU thread pool: one thread per physical core this process may use, idle threads asleep soon.

Left alone, TVM sizes its thread pool from the logical CPU count, halved on x86 on the assumption that every
core has two hyper-threads. On a machine without SMT (most cloud VMs, this project's 2-core CI and benchmark
machine) that leaves half the cores idle: the reference model ran 45 ms on one thread instead of 25 ms on two.

And after its last kernel a pool thread spins (sched_yield) 300,000 times before it sleeps: ~150 ms of a core
burnt after every 17 ms inference, taken from the request's own post-processing and from everything else on
the device. 2,000 rounds (~1 ms) still outlast the gaps between the kernels of one inference.
"""

from __future__ import annotations

import os
from pathlib import Path

THREADS_ENV = "TVM_NUM_THREADS"
OPERATOR_ENVS = (THREADS_ENV, "OMP_NUM_THREADS")  # TVM honours both; an operator's choice wins
SPIN_ENV = "TVM_THREAD_POOL_SPIN_COUNT"
IDLE_SPINS = 2000
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


def configure_thread_pool() -> int:
    """Size TVM's thread pools to the physical cores and shorten their idle spin (an operator's TVM_NUM_THREADS,
    OMP_NUM_THREADS or TVM_THREAD_POOL_SPIN_COUNT wins); return the thread count TVM will use. TVM reads these
    when a thread first runs a parallel kernel, so call this before any TVM module runs."""
    os.environ.setdefault(SPIN_ENV, str(IDLE_SPINS))
    for name in OPERATOR_ENVS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    count = physical_cores()
    os.environ[THREADS_ENV] = str(count)
    return count
