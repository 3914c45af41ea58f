"""Worker threads for one loaded model version, fed by a bounded queue.

TVM virtual machines are not assumed to be thread-safe, so every worker owns its own `LoadedModel` (its own
VM over the same shared library; for TensorRT, its own segment to the shared runner). The first worker chooses
the engine (engines.choose_engine); the others open the same one. The queue bound is the overload limit: a
request that finds it full is refused at once (RESOURCE_EXHAUSTED) instead of waiting behind work the agent
cannot finish.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from edge_agent.bundle.reader import Bundle
from edge_agent.engines.choice import EngineChoice, EngineFactory, EngineOptions, choose_engine
from edge_agent.errors import Overloaded
from edge_agent.models.cpu_threads import configure_thread_pool
from edge_agent.models.results import Detection
from edge_agent.models.runner import LoadedModel

log = logging.getLogger(__name__)


class PoolClosed(Exception):
    """The pool is draining (stopped or replaced by a new version); submit to the current one instead."""


@dataclass
class _Request:
    image: np.ndarray
    threshold: float | None
    with_mask: bool
    future: Future


@dataclass
class _Startup:
    """How a worker's model load went: set once, before the worker takes requests."""

    done: threading.Event
    error: BaseException | None = None


def _threads_per_worker(workers: int) -> int:
    return max(1, configure_thread_pool() // workers)


def _limit_tvm_threads(count: int) -> None:
    """Size the calling thread's TVM thread pool, so that workers × threads does not oversubscribe the CPU."""
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(0, count)


class InferencePool:
    """`workers` threads, each with its own VM; at most `max_queued` requests wait for a free worker."""

    def __init__(
        self,
        bundle: Bundle,
        workers: int,
        max_queued: int,
        progress: Callable[[str], None] = lambda _: None,
        options: EngineOptions | None = None,
    ) -> None:
        self.bundle = bundle
        self.workers = workers
        self.max_queued = max_queued
        self.choice: EngineChoice | None = None
        self._factory = EngineFactory(bundle, options or EngineOptions())
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._closed = False
        self._threads: list[threading.Thread] = []
        for index in range(workers):
            if index:
                progress(f"loading the {self.choice.spec.label} into worker {index + 1} of {workers}")
            startup = _Startup(threading.Event())
            thread = threading.Thread(
                target=self._work,
                args=(index, startup, progress),
                name=f"{bundle.component_name}-worker-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
            startup.done.wait()
            if startup.error is not None:
                self.close()
                raise startup.error

    def _work(self, index: int, startup: _Startup, progress: Callable[[str], None]) -> None:
        try:
            _limit_tvm_threads(_threads_per_worker(self.workers))
            if index == 0:
                self.choice, engine = choose_engine(self._factory, progress)
            else:
                engine = self._factory.open(self.choice.spec)
            model = LoadedModel(self.bundle, engine)
        except BaseException as exc:
            startup.error = exc
            return
        finally:
            startup.done.set()
        while True:
            request = self._queue.get()
            if request is None:
                model.close()
                return
            if request.future.set_running_or_notify_cancel():
                try:
                    request.future.set_result(model.detect(request.image, request.threshold, request.with_mask))
                except BaseException as exc:
                    request.future.set_exception(exc)
            del request

    def submit(self, image: np.ndarray, threshold: float | None, with_mask: bool) -> Future[Detection]:
        """Queue one image; raises Overloaded when the queue is full and PoolClosed once closing."""
        future: Future[Detection] = Future()
        with self._lock:
            if self._closed:
                raise PoolClosed
            try:
                self._queue.put_nowait(_Request(image, threshold, with_mask, future))
            except queue.Full:
                raise Overloaded(
                    f"model component '{self.bundle.component_name}' already has {self.max_queued} requests waiting "
                    f"for its {self.workers} worker(s); retry later, or raise MaxQueuedRequests/Concurrency"
                ) from None
        return future

    def close(self) -> None:
        """Refuse new requests, let every queued and running one finish, then stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for thread in self._threads:
            if thread.is_alive():
                self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._factory.close()
        log.info("unloaded %s %s", self.bundle.component_name, self.bundle.component_version)
