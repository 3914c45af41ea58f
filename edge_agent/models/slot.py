"""One model component on the device: its lifecycle state machine and the version it serves.

STOPPED/FAILED --start--> STARTING --(verified, loaded, golden check passed)--> RUNNING, or FAILED;
RUNNING --stop--> STOPPING (queued requests finish) --> STOPPED. A new registration of the component
while it runs is loaded beside the old version and swapped in once ready; requests already queued on
the old version finish there, so a swap fails no request. If the new version does not load, the old
one keeps serving and `status_message` says why.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from edge_agent.components.deployments import Deployment, Registration, verify_registration
from edge_agent.engines.choice import EngineOptions
from edge_agent.errors import NotInRequiredState
from edge_agent.models.inference_pool import InferencePool, PoolClosed
from edge_agent.models.memory_budget import MemoryBudget, estimate_bytes
from edge_agent.models.results import Detection

log = logging.getLogger(__name__)
SUBMIT_ATTEMPTS = 5  # a request that races a version swap retries on the new pool


class ModelStatus(enum.IntEnum):
    """Values as in the Edge Agent API's ModelStatus enum."""

    STOPPED = 0
    STARTING = 1
    RUNNING = 2
    FAILED = 3
    STOPPING = 4


@dataclass(frozen=True)
class PoolSettings:
    workers: int
    max_queued: int
    engines: EngineOptions = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    model_arn: str
    status: ModelStatus
    message: str


class ModelSlot:
    """Thread-safe: gRPC handler threads, the registry watcher and loader threads all call in."""

    def __init__(
        self,
        deployment: Deployment,
        settings: PoolSettings,
        budget: MemoryBudget,
        on_change: Callable[[], None] = lambda: None,
        open_pool: Callable[..., InferencePool] = InferencePool,
    ) -> None:
        """`open_pool` loads a version: InferencePool's signature (the tests give the state machine a pool of
        their own)."""
        self.name = deployment.name
        self._open_pool = open_pool
        self._on_change = on_change
        self._lock = threading.Lock()
        self._budget = budget
        self._registered = deployment
        self._serving: Deployment | None = None
        self._pool: InferencePool | None = None
        self._settings = settings
        self._threshold: float | None = None
        self._generation = 0
        self._status = ModelStatus.FAILED if deployment.error else ModelStatus.STOPPED
        self._message = deployment.error or f"version {deployment.version} is ready; call StartModel"

    def info(self) -> ModelInfo:
        with self._lock:
            deployment = self._serving or self._registered
            return ModelInfo(
                self.name, deployment.version, deployment.registration.model_arn, self._status, self._message
            )

    def _set_status(self, status: ModelStatus, message: str) -> None:
        """Called with the lock held; tells the listener (status reports) that something changed."""
        self._status, self._message = status, message
        self._on_change()

    # Lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> ModelStatus:
        """STOPPED or FAILED → STARTING; loading continues in the background."""
        with self._lock:
            if self._status not in (ModelStatus.STOPPED, ModelStatus.FAILED):
                raise NotInRequiredState(
                    f"model component '{self.name}' is {self._status.name}; StartModel needs STOPPED or FAILED"
                )
            bundle = self._registered.bundle
            if bundle is not None:
                self._budget.reserve(self.name, estimate_bytes(bundle, self._settings.workers))
            self._set_status(ModelStatus.STARTING, f"starting version {self._registered.version}")
            self._spawn_loader()
            return ModelStatus.STARTING

    def stop(self) -> ModelStatus:
        """RUNNING → STOPPING → STOPPED; returns once queued requests have finished and the model is unloaded."""
        with self._lock:
            if self._status != ModelStatus.RUNNING:
                raise NotInRequiredState(
                    f"model component '{self.name}' is {self._status.name}; StopModel needs RUNNING"
                )
            pool = self._take_pool("stopping: finishing queued requests")
        self._finish_stop(pool, "stopped; call StartModel to run it again")
        return ModelStatus.STOPPED

    def retire(self) -> None:
        """The component was removed: unload it (queued requests still finish)."""
        with self._lock:
            pool = self._take_pool("removed from the device: finishing queued requests")
        self._finish_stop(pool, "removed from the device")

    def _take_pool(self, message: str) -> InferencePool | None:
        self._generation += 1  # loaders still running discard their result
        pool, self._pool, self._serving = self._pool, None, None
        if pool is not None:
            self._set_status(ModelStatus.STOPPING, message)
        return pool

    def _finish_stop(self, pool: InferencePool | None, message: str) -> None:
        if pool is not None:
            pool.close()
        with self._lock:
            if self._status in (ModelStatus.STOPPING, ModelStatus.STARTING):
                self._set_status(ModelStatus.STOPPED, message)
        self._budget.release(self.name)

    # New versions and settings ---------------------------------------------------------------------------

    def replace(self, deployment: Deployment) -> None:
        """A (re-)registration: swap versions while running, or just record it while stopped."""
        with self._lock:
            self._registered = deployment
            if self._status in (ModelStatus.STOPPED, ModelStatus.FAILED):
                self._generation += 1
                self._set_status(
                    ModelStatus.FAILED if deployment.error else ModelStatus.STOPPED,
                    deployment.error or f"version {deployment.version} is ready; call StartModel",
                )
            elif self._status == ModelStatus.RUNNING and deployment.error:
                self._generation += 1
                self._message = f"{self._serving_text()}; not switching: {deployment.error}"
            elif self._status in (ModelStatus.STARTING, ModelStatus.RUNNING):
                self._spawn_loader()

    def configure(self, settings: PoolSettings, threshold: float | None) -> None:
        """New threshold applies to the next request; new pool settings reload a running model in place."""
        with self._lock:
            self._threshold = threshold
            if settings == self._settings:
                return
            self._settings = settings
            if self._status in (ModelStatus.STARTING, ModelStatus.RUNNING):
                self._spawn_loader()

    # Loading ---------------------------------------------------------------------------------------------

    def _serving_text(self) -> str:
        if self._serving is None or self._pool is None:
            return "not serving"
        return (
            f"running version {self._serving.version} with {self._pool.workers} worker(s), up to "
            f"{self._pool.max_queued} queued request(s), on {self._pool.choice.describe()}"
        )

    def _spawn_loader(self) -> None:
        """Called with the lock held: load the registered version with the current settings."""
        self._generation += 1
        args = (self._generation, self._registered.registration, self._settings)
        threading.Thread(target=self._load, args=args, name=f"{self.name}-loader", daemon=True).start()

    def _progress(self, generation: int, version: str, text: str) -> None:
        with self._lock:
            if generation != self._generation:
                return
            prefix = self._serving_text() + "; " if self._status == ModelStatus.RUNNING else ""
            self._message = f"{prefix}version {version}: {text}"

    def _load(self, generation: int, registration: Registration, settings: PoolSettings) -> None:
        version = registration.component_version
        self._progress(generation, version, "verifying the bundle (sha256 of every file)")
        deployment = verify_registration(registration)
        pool = None
        if deployment.error is None:
            try:
                pool = self._open_pool(
                    deployment.bundle,
                    settings.workers,
                    settings.max_queued,
                    lambda text: self._progress(generation, version, text),
                    settings.engines,
                )
            except Exception as exc:
                log.exception("%s: version %s failed to load", self.name, version)
                deployment = Deployment(registration, deployment.bundle, f"version {version} failed to load: {exc}")
        self._install(generation, deployment, pool)

    def _install(self, generation: int, deployment: Deployment, pool: InferencePool | None) -> None:
        retired = pool
        with self._lock:
            if generation == self._generation and self._status in (ModelStatus.STARTING, ModelStatus.RUNNING):
                if pool is not None:
                    retired, self._pool, self._serving = self._pool, pool, deployment
                    self._set_status(ModelStatus.RUNNING, self._serving_text())
                    self._budget.reserve(self.name, estimate_bytes(deployment.bundle, pool.workers), check=False)
                    log.info("%s: %s", self.name, self._message)
                elif self._status == ModelStatus.STARTING:
                    self._set_status(ModelStatus.FAILED, deployment.error or "failed to load")
                    self._budget.release(self.name)
                else:
                    self._message = self._serving_text() + f"; {deployment.error}"
        if retired is not None:
            retired.close()

    # Inference -------------------------------------------------------------------------------------------

    def submit(self, image: np.ndarray, with_mask: bool) -> Future[Detection]:
        """Queue an image on the serving version; FAILED_PRECONDITION unless RUNNING."""
        for _ in range(SUBMIT_ATTEMPTS):
            with self._lock:
                if self._status != ModelStatus.RUNNING or self._pool is None:
                    raise NotInRequiredState(
                        f"model component '{self.name}' is {self._status.name}, not RUNNING; call StartModel and "
                        "wait until DescribeModel reports RUNNING"
                    )
                pool, threshold = self._pool, self._threshold
            try:
                return pool.submit(image, threshold, with_mask)
            except PoolClosed:
                continue
        raise NotInRequiredState(f"model component '{self.name}' is switching versions; retry the request")
