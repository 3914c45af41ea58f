"""TVM's CPU thread count: one thread per physical core, unless the operator chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cpu_threads import OPERATOR_ENVS, THREADS_ENV, physical_cores, use_physical_cores

REPO = Path(__file__).resolve().parent.parent


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
    monkeypatch.setenv(name, "3")
    assert use_physical_cores() == 3
    assert os.environ.get(THREADS_ENV) == ("3" if name == THREADS_ENV else None)


def test_tvm_runs_one_thread_per_physical_core() -> None:
    """In a fresh process, TVM's thread pool takes the count we set (its own x86 default is half the CPUs)."""
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENVS}
    script = (
        "from edge_agent.cpu_threads import use_physical_cores\n"
        "expected = use_physical_cores()\n"
        "import tvm\n"
        "print(expected, tvm.get_global_func('runtime.NumThreads')())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    expected, used = done.stdout.split()
    assert int(expected) == physical_cores()
    assert used == expected
