"""Polls the registry folder, the models folder and the configuration file, and tells the agent what changed.

Polling (twice a second by default) needs no inotify and works on every filesystem; registrations are
rare and each poll is a directory listing and a few stat calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.bundle.manifest import MANIFEST_NAME
from edge_agent.components.deployments import Deployment, Registration, verify_registration
from edge_agent.components.models_folder import ModelsFolder
from edge_agent.components.registrations import read_registry
from edge_agent.config import AgentConfig, ConfigError, load_config_file
from edge_agent.problem_log import ProblemLog

log = logging.getLogger(__name__)


def _manifest_mtime(registration: Registration) -> int | None:
    try:
        return (registration.path / MANIFEST_NAME).stat().st_mtime_ns
    except OSError:
        return None


class Watcher:
    """Call `poll()` once to load what is there, then `start()` to follow changes in a background thread."""

    def __init__(
        self,
        agent: Agent,
        registry_dir: Path,
        models_dir: Path | None,
        unpack_root: Path,
        config_file: Path | None,
        apply_config: Callable[[AgentConfig], None],
        interval: float = 0.5,
    ) -> None:
        self.agent = agent
        self.registry_dir = registry_dir
        self.problems = ProblemLog(log)  # bad registrations and bundles: logged once, not on every poll
        self.models_folder = ModelsFolder(models_dir, unpack_root, self.problems) if models_dir is not None else None
        self.config_file = config_file
        self.apply_config = apply_config
        self.interval = interval
        self._known: dict[str, tuple[Registration, int | str | None]] = {}  # name → what was last applied
        self._config_mtime: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def poll(self) -> None:
        self._poll_config()
        self._poll_registrations()

    def _poll_registrations(self) -> None:
        current: dict[str, Registration] = {}
        failed: dict[str, Deployment] = {}
        if self.models_folder is not None:
            current, failed = self.models_folder.scan()
        current.update(read_registry(self.registry_dir, self.problems))  # a registration wins over a folder entry
        for name, registration in current.items():
            fingerprint = (registration, _manifest_mtime(registration))
            if self._known.get(name) != fingerprint:
                self._known[name] = fingerprint
                self.agent.update(verify_registration(registration))
        for name, deployment in failed.items():
            if name not in current and self._known.get(name) != (deployment.registration, deployment.error):
                self._known[name] = (deployment.registration, deployment.error)
                self.agent.update(deployment)
        for name in set(self._known) - set(current) - set(failed):
            del self._known[name]
            self.agent.remove(name)

    def _poll_config(self) -> None:
        if self.config_file is None:
            return
        try:
            mtime = self.config_file.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._config_mtime:
            return
        self._config_mtime = mtime
        try:
            config = load_config_file(self.config_file)
        except ConfigError as exc:
            log.error("keeping the previous configuration: %s", exc)
            return
        self.apply_config(config)
        log.info("configuration applied from %s", self.config_file)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:
                log.exception("watcher poll failed; retrying")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
