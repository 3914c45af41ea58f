"""TVM's CPU thread count: one thread per physical core, unless the operator chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.models.cpu_threads import (
    IDLE_SPINS,
    OPERATOR_ENVS,
    SPIN_ENV,
    THREADS_ENV,
    configure_thread_pool,
    physical_cores,
)

REPO = Path(__file__).resolve().parents[2]


def _fake_topology(root: Path, cores: dict[int, tuple[int, int]]) -> Path:
    for cpu, (package, core) in cores.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


def test_hyper_threads_of_one_core_count_once(tmp_path: Path) -> None:
    usable = sorted(os.sched_getaffinity(0))
    siblings = _fake_topology(tmp_path / "smt", {cpu: (0, 0) for cpu in usable})
    separate = _fake_topology(tmp_path / "cores", {cpu: (cpu // 64, cpu % 64) for cpu in usable})
    assert physical_cores(siblings) == 1
    assert physical_cores(separate) == len(usable)
    assert physical_cores(tmp_path / "no-topology") == len(usable)


@pytest.mark.parametrize("name", OPERATOR_ENVS)
def test_an_operators_thread_count_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for other in OPERATOR_ENVS:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(SPIN_ENV, str(IDLE_SPINS))  # so that the spin count it sets is undone after the test
    monkeypatch.setenv(name, "3")
    assert configure_thread_pool() == 3
    assert os.environ.get(THREADS_ENV) == ("3" if name == THREADS_ENV else None)


def test_an_operators_spin_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SPIN_ENV, "50000")
    configure_thread_pool()
    assert os.environ[SPIN_ENV] == "50000"
    monkeypatch.delenv(SPIN_ENV)
    configure_thread_pool()
    assert os.environ[SPIN_ENV] == str(IDLE_SPINS)


# Runs one parallel kernel on TVM's pool, then prints the CPU time the process spends in the next 300 ms.
IDLE_CPU_SCRIPT = """
import time
import numpy as np
from edge_agent.models.cpu_threads import configure_thread_pool
configure_thread_pool()
import tvm
from tvm.script import tirx as T

@T.prim_func
def double(a: T.Buffer((65536,), "float32"), b: T.Buffer((65536,), "float32")):
    for i in T.parallel(65536):
        b[i] = a[i] * T.float32(2)

kernel = tvm.compile(double, target="llvm")["double"]
a, b = tvm.runtime.tensor(np.ones(65536, np.float32)), tvm.runtime.empty((65536,), "float32")
kernel(a, b)
assert (b.numpy() == 2).all()
started = time.process_time()
time.sleep(0.3)
print((time.process_time() - started) * 1000)
"""


def _idle_cpu_ms(script: Path, spin_count: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in (*OPERATOR_ENVS, SPIN_ENV)} | {"PYTHONPATH": str(REPO)}
    if spin_count is not None:
        env[SPIN_ENV] = spin_count
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(physical_cores() < 2, reason="needs 2 physical CPU cores: with one, TVM starts no pool thread")
def test_idle_pool_threads_sleep_soon_after_a_kernel(tmp_path: Path) -> None:
    """TVM's own spin count (300,000) keeps a pool thread busy ~150 ms after a kernel; ours stops within ~1 ms."""
    script = tmp_path / "idle_cpu.py"  # a file, not -c: TVMScript reads the kernel's source
    script.write_text(IDLE_CPU_SCRIPT)
    tvm_default = _idle_cpu_ms(script, "300000")
    configured = _idle_cpu_ms(script, None)
    assert tvm_default > 60, f"TVM's default spin burnt only {tvm_default:.1f} ms: the measurement sees no spin"
    assert configured < 20, f"{configured:.1f} ms of CPU in the 300 ms after one kernel"


def test_tvm_runs_one_thread_per_physical_core() -> None:
    """In a fresh process, TVM's thread pool takes the count we set (its own x86 default is half the CPUs)."""
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENVS}
    script = (
        "from edge_agent.models.cpu_threads import configure_thread_pool\n"
        "expected = configure_thread_pool()\n"
        "import tvm\n"
        "print(expected, tvm.get_global_func('runtime.NumThreads')())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    expected, used = done.stdout.split()
    assert int(expected) == physical_cores()
    assert used == expected
