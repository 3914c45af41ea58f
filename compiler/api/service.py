"""The packaging service: validates each request against the API model, then runs the operation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from compiler.api import idempotency
from compiler.api.api_model import OPERATIONS, split_camel
from compiler.api.validation import check_request
from compiler.database import Database
from compiler.greengrass.catalog import ComponentCatalog
from compiler.greengrass.output_store import open_output_store
from compiler.jobs.operations import PackagingJobs
from compiler.jobs.worker_pool import WorkerPool
from compiler.models.registry import Registry
from compiler.settings import Settings


def operation_method(operation: str) -> str:
    """StartModelPackagingJob → start_model_packaging_job (boto3's naming)."""
    return split_camel(operation, "_")


class Service:
    """All operations of the API model, one method each (boto3 names), behind `call`."""

    def __init__(self, settings: Settings, recover: bool = True) -> None:
        self.settings = settings
        self.db = Database(settings.database_path)
        self.output_store = open_output_store(settings)
        self.workers = WorkerPool(settings)
        self.registry = Registry(settings, self.db)
        self.jobs = PackagingJobs(settings, self.db, self.registry, self.workers, self.output_store)
        self.catalog = ComponentCatalog(self.db, self.output_store)
        # Each part names the operations it serves; together they must be exactly the API model's.
        self._handlers: dict[str, Callable[..., dict[str, Any]]] = {
            operation: getattr(part, operation_method(operation))
            for part in (self.registry, self.jobs, self.catalog)
            for operation in part.OPERATIONS
        }
        if set(self._handlers) != set(OPERATIONS):
            raise AssertionError(f"operations without a handler: {sorted(set(OPERATIONS) ^ set(self._handlers))}")
        if recover:
            self.jobs.recover_orphans()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate `params` against the model and run `operation`, honouring ClientToken idempotency."""
        check_request(operation, params)
        handler = self._handlers[operation]
        token_member = OPERATIONS[operation].get("idempotency")
        token = params.get(token_member) if token_member else None
        if not token:
            return handler(**params)
        request_hash = hashlib.sha256(
            json.dumps({k: v for k, v in params.items() if k != token_member}, sort_keys=True, default=str).encode()
        ).hexdigest()
        resource_type = "MODEL_PACKAGE_JOB" if "Packaging" in operation else "PROJECT"
        cached = idempotency.claim(self.db, operation, token, request_hash, resource_type)
        if cached is not None:
            return cached
        with idempotency.handling(self.db, operation, token):
            return handler(**params)
