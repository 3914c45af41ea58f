"""The agent's model components by name: what the gRPC API, the watcher and the configuration act on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from edge_agent.components.deployments import Deployment
from edge_agent.config import AgentConfig
from edge_agent.defaults import COMPONENT_NAME
from edge_agent.engines.choice import EngineOptions
from edge_agent.errors import InvalidArgument, ModelNotFound, quoted
from edge_agent.models.memory_budget import MIB, MemoryBudget
from edge_agent.models.results import Detection
from edge_agent.models.slot import ModelInfo, ModelSlot, ModelStatus, PoolSettings

log = logging.getLogger(__name__)


class Agent:
    """Thread-safe registry of model slots."""

    def __init__(self, config: AgentConfig, engine_cache_dir: Path | None = None) -> None:
        self._engine_cache_dir = engine_cache_dir
        self._lock = threading.Lock()
        self._slots: dict[str, ModelSlot] = {}
        self._config = config
        self._budget = MemoryBudget(config.memory_budget_mib * MIB)
        self._listeners: list[Callable[[], None]] = []

    @property
    def config(self) -> AgentConfig:
        return self._config

    def _settings(self) -> PoolSettings:
        engines = EngineOptions(self._config.tensorrt_python, self._config.tensorrt_precision, self._engine_cache_dir)
        return PoolSettings(self._config.concurrency, self._config.max_queued_requests, engines)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` (quickly, without blocking) whenever a model's status or version, or the set of
        models, changes."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    # Registrations ---------------------------------------------------------------------------------------

    def update(self, deployment: Deployment) -> None:
        """A component was registered, or registered again (possibly a new version)."""
        with self._lock:
            slot = self._slots.get(deployment.name)
            if slot is None:
                slot = ModelSlot(deployment, self._settings(), self._budget, self._notify)
                slot.configure(self._settings(), self._config.thresholds.get(deployment.name))
                self._slots[deployment.name] = slot
                log.info("registered %s version %s", deployment.name, deployment.version)
                self._notify()
                return
        log.info("re-registered %s as version %s", deployment.name, deployment.version)
        slot.replace(deployment)

    def remove(self, name: str) -> None:
        """A component was deregistered: it disappears at once; its queued requests still finish."""
        with self._lock:
            slot = self._slots.pop(name, None)
        if slot is not None:
            log.info("deregistered %s", name)
            slot.retire()
            self._notify()

    def configure(self, config: AgentConfig) -> None:
        """Apply a new configuration to every model without a restart."""
        with self._lock:
            self._config = config
            self._budget.limit_bytes = config.memory_budget_mib * MIB
            slots = list(self._slots.values())
        for slot in slots:
            slot.configure(self._settings(), config.thresholds.get(slot.name))

    def shutdown(self) -> None:
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.retire()

    # The Edge Agent API ----------------------------------------------------------------------------------

    def _slot(self, name: str) -> ModelSlot:
        if not name:
            raise InvalidArgument("model_component is empty: give the name of a model component on this device")
        if not COMPONENT_NAME.fullmatch(name):
            raise InvalidArgument(
                f"model_component {quoted(name)} is not a Greengrass component name: 1 to 128 letters, digits, '.', "
                "'-' and '_'"
            )
        with self._lock:
            slot = self._slots.get(name)
            known = sorted(self._slots)
        if slot is None:
            listed = ", ".join(known) if known else "none"
            raise ModelNotFound(f"no model component named '{name}' on this device (deployed: {listed})")
        return slot

    def list_models(self) -> list[ModelInfo]:
        with self._lock:
            slots = sorted(self._slots.values(), key=lambda s: s.name)
        return [slot.info() for slot in slots]

    def describe(self, name: str) -> ModelInfo:
        return self._slot(name).info()

    def start(self, name: str) -> ModelStatus:
        return self._slot(name).start()

    def stop(self, name: str) -> ModelStatus:
        return self._slot(name).stop()

    def submit(self, name: str, image: np.ndarray, with_mask: bool) -> Future[Detection]:
        return self._slot(name).submit(image, with_mask)
