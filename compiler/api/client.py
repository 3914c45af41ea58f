"""A Python client shaped like boto3's: `Client().start_model_packaging_job(ProjectName=..., ...)`."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from compiler.api import errors
from compiler.api.api_model import OPERATIONS
from compiler.api.service import Service, operation_method
from compiler.settings import Settings


class Client:
    """Keyword arguments and response dicts as boto3's `lookoutvision` client (timestamps are datetimes).

    Like the AWS SDKs, it fills in a fresh ClientToken when an idempotent call gives none.
    Errors are raised as `client.exceptions.ValidationException` and friends.
    """

    exceptions = errors

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.service = Service(Settings.from_env(data_dir))

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        token = OPERATIONS[operation].get("idempotency")
        if token and not params.get(token):
            params = {**params, token: str(uuid.uuid4())}
        return self.service.call(operation, params)


def _make_method(operation: str):
    def method(self: Client, **params: Any) -> dict[str, Any]:
        return self.call(operation, params)

    method.__name__ = operation_method(operation)
    method.__doc__ = OPERATIONS[operation]["doc"]
    return method


for _operation in OPERATIONS:
    setattr(Client, operation_method(_operation), _make_method(_operation))
