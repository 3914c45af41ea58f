"""Conditions polled over and over (a bad bundle in the models folder) are logged once, and again only when
they change or clear, so a poll twice a second cannot fill the log."""

from __future__ import annotations

import logging


class ProblemLog:
    """The current problem of each thing (by key); ERROR when it appears or changes, INFO when it clears."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._current: dict[str, str] = {}

    def problem(self, key: str, message: str) -> None:
        if self._current.get(key) != message:
            self._current[key] = message
            self._logger.error("%s", message)

    def fine(self, key: str) -> None:
        if self._current.pop(key, None) is not None:
            self._logger.info("%s: no longer a problem", key)
