"""StartModelPackagingJob / DescribeModelPackagingJob / ListModelPackagingJobs."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from compiler.api.errors import (
    ConflictException,
    ResourceNotFoundException,
    ThrottlingException,
)
from compiler.api.idempotency import settle
from compiler.api.pagination import DEFAULT_PAGE_SIZE, page_response
from compiler.api.timestamps import to_datetime
from compiler.database import Database
from compiler.greengrass.output_store import OutputStore
from compiler.jobs.plan import plan_job
from compiler.jobs.store import JobStep, JobStore, NewJob
from compiler.jobs.worker_pool import WorkerPool
from compiler.models.registry import Registry
from compiler.settings import Settings

PACKAGING_METHOD = "Greengrass"
CREATED_MESSAGE = "Job created; waiting for a packaging worker."
QUEUE_FULL_RETRY_SECONDS = 60  # a job takes minutes: a client (boto3 retries throttling itself) waits this long


def component_version_arn(settings: Settings, name: str, version: str) -> str:
    return f"arn:aws:greengrass:{settings.region}:{settings.account}:components:{name}:versions:{version}"


def pid_is_worker(pid: int | None) -> bool:
    """True when `pid` is a live packaging worker (checked through /proc, so a reused pid does not count)."""
    if not pid:
        return False
    try:
        return b"compiler.jobs.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class PackagingJobs:
    """The three packaging operations plus crash recovery."""

    OPERATIONS = ("StartModelPackagingJob", "DescribeModelPackagingJob", "ListModelPackagingJobs")

    def __init__(
        self, settings: Settings, db: Database, registry: Registry, workers: WorkerPool, output_store: OutputStore
    ) -> None:
        self.settings = settings
        self.output_store = output_store
        self.db = db
        self.registry = registry
        self.workers = workers
        self.store = JobStore(db)

    def start_model_packaging_job(
        self,
        ProjectName: str,
        ModelVersion: str,
        Configuration: dict[str, Any],
        JobName: str | None = None,
        Description: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        greengrass = Configuration["Greengrass"]
        plan = plan_job(greengrass, self.settings)  # every rule is checked now, before the job exists
        self.output_store.check_bucket(plan.bucket)
        job_name = JobName or str(uuid.uuid4())
        with self.db.transaction() as conn:
            version = self.registry.resolve_version(conn, ProjectName, ModelVersion)
            component = greengrass["ComponentName"]
            component_version = greengrass.get("ComponentVersion") or f"{version}.0.0"
            if self.store.name_taken(conn, ProjectName, job_name):
                raise ConflictException(
                    f"A model packaging job named '{job_name}' already exists in project "
                    f"'{ProjectName}'. Choose another JobName.",
                    job_name,
                    "MODEL_PACKAGE_JOB",
                )
            if self.store.component_taken(conn, component, component_version):
                raise ConflictException(
                    f"Component {component} version {component_version} already exists (or is being packaged). "
                    "Give a new ComponentVersion.",
                    f"{component}:{component_version}",
                    "MODEL_PACKAGE_JOB",
                )
            active = self.store.active_count(conn)
            if active >= self.settings.max_queued_jobs:
                raise ThrottlingException(
                    f"{active} model packaging jobs are already queued or running (limit "
                    f"{self.settings.max_queued_jobs}). Wait for some to finish, or raise "
                    "LOOKOUT_EDGE_MAX_QUEUED_JOBS.",
                    QuotaCode="model-packaging-jobs-in-progress",
                    ServiceCode="lookoutvision",
                    RetryAfterSeconds=QUEUE_FULL_RETRY_SECONDS,
                )
            job = NewJob(
                project=ProjectName,
                name=job_name,
                model_version=version,
                configuration=Configuration,
                plan=plan.to_json(),
                description=Description,
                component_name=component,
                component_version=component_version,
                component_arn=component_version_arn(self.settings, component, component_version),
                bucket=plan.bucket,
            )
            self.store.create(conn, job, CREATED_MESSAGE)
            settle(conn, {"JobName": job_name})
        self.workers.ensure_worker()
        return {"JobName": job_name}

    def _job_row(self, project: str, job_name: str) -> sqlite3.Row:
        self.registry.project_row(None, project)
        row = self.store.find(project, job_name)
        if row is None:
            raise ResourceNotFoundException(
                f"Model packaging job '{job_name}' does not exist in project '{project}'. "
                "List jobs with list-model-packaging-jobs.",
                job_name,
                "MODEL_PACKAGE_JOB",
            )
        return row

    @staticmethod
    def _metadata(row: sqlite3.Row) -> dict[str, Any]:
        result = {
            "JobName": row["name"],
            "ProjectName": row["project"],
            "ModelVersion": str(row["model_version"]),
            "ModelPackagingMethod": PACKAGING_METHOD,
            "Status": row["status"],
            "StatusMessage": row["status_message"],
            "CreationTimestamp": to_datetime(row["created"]),
            "LastUpdatedTimestamp": to_datetime(row["updated"]),
        }
        if row["description"]:
            result["ModelPackagingJobDescription"] = row["description"]
        return result

    def describe_model_packaging_job(self, ProjectName: str, JobName: str) -> dict[str, Any]:
        self.recover_orphans()
        row = self._job_row(ProjectName, JobName)
        description = {**self._metadata(row), "ModelPackagingConfiguration": json.loads(row["configuration"])}
        if row["output"]:
            description["ModelPackagingOutputDetails"] = json.loads(row["output"])
        return {"ModelPackagingDescription": description}

    def job_steps(self, project: str, job_name: str, after_id: int = 0) -> list[JobStep]:
        """Every status change of a job since step `after_id` (what `--wait` prints)."""
        self.recover_orphans()
        return self.store.steps_after(self._job_row(project, job_name)["seq"], after_id)

    def list_model_packaging_jobs(
        self, ProjectName: str, NextToken: str | None = None, MaxResults: int = DEFAULT_PAGE_SIZE
    ) -> dict[str, Any]:
        self.recover_orphans()
        self.registry.project_row(None, ProjectName)
        page, token = self.store.page(ProjectName, NextToken, MaxResults)
        return page_response("ListModelPackagingJobs", [self._metadata(r) for r in page], token)

    def recover_orphans(self) -> None:
        """Fail RUNNING jobs whose worker died; make sure queued jobs have a worker. Reads first: a write
        transaction is opened only when there is an orphan to fail, so Describe and List never write otherwise."""
        for row in self.store.running():
            if pid_is_worker(row["worker_pid"]) or row["worker_pid"] == os.getpid():
                continue
            message = (
                f"The packaging worker (pid {row['worker_pid']}) stopped while the job was running "
                f"(last step: {row['status_message']}). Nothing was published. Start a new "
                "packaging job; the worker log is in the data directory's logs/ folder."
            )
            self.store.fail_if_still_running(row["seq"], row["worker_pid"], message)
        if self.store.has_queued():
            self.workers.ensure_worker()
