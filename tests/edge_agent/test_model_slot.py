"""ModelSlot's state machine and version swaps, in-process, with a pool the test controls (no model, no
process): loading blocks until the test lets it finish, or fails when it says so."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from edge_agent.components.deployments import Deployment, Registration
from edge_agent.errors import NotInRequiredState
from edge_agent.models.memory_budget import MemoryBudget
from edge_agent.models.slot import ModelSlot, ModelStatus, PoolSettings

NAME = "com.example.Boards"


class ControlledPool:
    """Stands in for InferencePool: opening waits for `release` (or raises `failure`); requests answer with the
    version that served them."""

    opened: ClassVar[list[ControlledPool]] = []

    def __init__(self, bundle, workers, max_queued, progress, options) -> None:
        self.version, self.workers, self.max_queued = bundle.version, workers, max_queued
        self.choice = SimpleNamespace(describe=lambda: "the test's engine")
        self.closed = False
        progress("loading in the test")
        gate = GATES[self.version]
        assert gate.release.wait(10), "the test never let the load finish"
        if gate.failure:
            raise gate.failure
        ControlledPool.opened.append(self)

    def submit(self, image, threshold, with_mask) -> Future:
        future: Future = Future()
        future.set_result(self.version)
        return future

    def close(self) -> None:
        self.closed = True


class Gate:
    def __init__(self, failure: Exception | None = None) -> None:
        self.release, self.failure = threading.Event(), failure


GATES: dict[str, Gate] = {}


def _deployment(version: str) -> Deployment:
    bundle = SimpleNamespace(version=version, engines=[])  # no compiled module: the memory estimate is 0
    return Deployment(Registration(NAME, version, "arn:x", Path("/nonexistent")), bundle, None)


def _wait_for(slot: ModelSlot, status: ModelStatus, text: str = "") -> str:
    deadline = time.time() + 10
    while time.time() < deadline:
        info = slot.info()
        if info.status == status and text in info.message:
            return info.message
        time.sleep(0.01)
    raise AssertionError(f"not {status.name} with {text!r}: {slot.info()}")


@pytest.fixture
def slot(monkeypatch):
    monkeypatch.setattr("edge_agent.models.slot.verify_registration", lambda r: _deployment(r.component_version))
    GATES.clear()
    ControlledPool.opened.clear()
    return ModelSlot(_deployment("1.0.0"), PoolSettings(1, 4), MemoryBudget(0), open_pool=ControlledPool)


def test_start_runs_once_loaded_and_stop_unloads(slot) -> None:
    GATES["1.0.0"] = Gate()
    with pytest.raises(NotInRequiredState):
        slot.submit(None, with_mask=False)  # STOPPED
    assert slot.start() == ModelStatus.STARTING
    assert "loading in the test" in _wait_for(slot, ModelStatus.STARTING, "loading")
    GATES["1.0.0"].release.set()
    assert _wait_for(slot, ModelStatus.RUNNING).endswith("on the test's engine")
    assert slot.submit(None, with_mask=False).result() == "1.0.0"
    assert slot.stop() == ModelStatus.STOPPED and ControlledPool.opened[0].closed


def test_a_new_version_is_swapped_in_only_once_loaded_and_the_old_one_serves_meanwhile(slot) -> None:
    GATES["1.0.0"], GATES["2.0.0"] = Gate(), Gate()
    GATES["1.0.0"].release.set()
    slot.start()
    _wait_for(slot, ModelStatus.RUNNING)
    slot.replace(_deployment("2.0.0"))
    _wait_for(slot, ModelStatus.RUNNING, "version 2.0.0: loading in the test")
    assert slot.submit(None, with_mask=False).result() == "1.0.0"  # still the old version
    GATES["2.0.0"].release.set()
    _wait_for(slot, ModelStatus.RUNNING, "running version 2.0.0")
    assert slot.submit(None, with_mask=False).result() == "2.0.0"
    old, new = ControlledPool.opened
    assert old.closed and not new.closed


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(slot) -> None:
    GATES["1.0.0"], GATES["2.0.0"] = Gate(), Gate(RuntimeError("no engine of this bundle can run"))
    GATES["1.0.0"].release.set()
    slot.start()
    _wait_for(slot, ModelStatus.RUNNING)
    slot.replace(_deployment("2.0.0"))
    GATES["2.0.0"].release.set()
    message = _wait_for(slot, ModelStatus.RUNNING, "failed to load")
    assert message.startswith("running version 1.0.0") and "no engine of this bundle can run" in message
    assert slot.submit(None, with_mask=False).result() == "1.0.0"


def test_a_first_version_that_fails_to_load_is_failed_and_can_be_started_again(slot) -> None:
    GATES["1.0.0"] = Gate(RuntimeError("golden check failed"))
    GATES["1.0.0"].release.set()
    slot.start()
    assert "golden check failed" in _wait_for(slot, ModelStatus.FAILED)
    GATES["1.0.0"] = Gate()
    GATES["1.0.0"].release.set()
    assert slot.start() == ModelStatus.STARTING
    _wait_for(slot, ModelStatus.RUNNING)
