"""Packaging jobs in the database: every statement about the `jobs`, `job_steps` and component-reservation rows,
and every state transition (CREATED → RUNNING → SUCCEEDED | FAILED), in one place.

Each status change is kept as a step: DescribeModelPackagingJob shows the last, `--wait` shows all. Methods that
take `conn` run inside the caller's transaction (accepting a job shares one with its ClientToken and the model
version it resolves); the others open their own, and reads never write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from compiler.api.pagination import page_rows
from compiler.database import Database

ACTIVE_JOB_STATES = ("CREATED", "RUNNING")


@dataclass(frozen=True)
class JobStep:
    """One status change of a job, in the order they happened (`id` grows)."""

    id: int
    at: float
    status: str
    message: str


@dataclass(frozen=True)
class NewJob:
    project: str
    name: str
    model_version: int
    configuration: dict[str, Any]
    plan: str
    description: str | None
    component_name: str
    component_version: str
    component_arn: str
    bucket: str


def _record_step(conn: sqlite3.Connection, seq: int, status: str, message: str) -> None:
    now = time.time()
    conn.execute(
        "UPDATE jobs SET status = ?, status_message = ?, updated = ? WHERE seq = ?", (status, message, now, seq)
    )
    conn.execute(
        "INSERT INTO job_steps (job_seq, at, status, message) VALUES (?, ?, ?, ?)", (seq, now, status, message)
    )


def _fail(conn: sqlite3.Connection, seq: int, message: str) -> None:
    """FAILED, and the component version the job reserved is free again."""
    _record_step(conn, seq, "FAILED", message)
    conn.execute("DELETE FROM components WHERE job_seq = ? AND state = 'RESERVED'", (seq,))


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Accepting a job (inside the caller's transaction) ----------------------------------------------------

    @staticmethod
    def name_taken(conn: sqlite3.Connection, project: str, name: str) -> bool:
        return conn.execute("SELECT 1 FROM jobs WHERE project = ? AND name = ?", (project, name)).fetchone() is not None

    @staticmethod
    def component_taken(conn: sqlite3.Connection, name: str, version: str) -> bool:
        found = conn.execute("SELECT 1 FROM components WHERE name = ? AND version = ?", (name, version)).fetchone()
        return found is not None

    @staticmethod
    def active_count(conn: sqlite3.Connection) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN {ACTIVE_JOB_STATES}").fetchone()[0]

    @staticmethod
    def create(conn: sqlite3.Connection, job: NewJob, message: str) -> int:
        """Insert the job as CREATED and reserve its component version; returns its seq."""
        now = time.time()
        seq = conn.execute(
            "INSERT INTO jobs (project, name, model_version, configuration, plan, description, status,"
            " status_message, component_name, component_version, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, 'CREATED', ?, ?, ?, ?, ?)",
            (
                job.project,
                job.name,
                job.model_version,
                json.dumps(job.configuration),
                job.plan,
                job.description,
                message,
                job.component_name,
                job.component_version,
                now,
                now,
            ),
        ).lastrowid
        _record_step(conn, seq, "CREATED", message)
        conn.execute(
            "INSERT INTO components (name, version, arn, job_seq, state, bucket, created) "
            "VALUES (?, ?, ?, ?, 'RESERVED', ?, ?)",
            (job.component_name, job.component_version, job.component_arn, seq, job.bucket, now),
        )
        return seq

    # Reads ---------------------------------------------------------------------------------------------------

    def find(self, project: str, name: str) -> sqlite3.Row | None:
        rows = self.db.query("SELECT * FROM jobs WHERE project = ? AND name = ?", (project, name))
        return rows[0] if rows else None

    def get(self, seq: int) -> sqlite3.Row:
        return self.db.query("SELECT * FROM jobs WHERE seq = ?", (seq,))[0]

    def page(self, project: str, next_token: str | None, max_results: int) -> tuple[list[sqlite3.Row], str | None]:
        return page_rows(
            self.db,
            f"jobs/{project}",
            "SELECT * FROM jobs WHERE project = ?",
            (project,),
            "seq",
            next_token,
            max_results,
        )

    def steps_after(self, seq: int, after_id: int = 0) -> list[JobStep]:
        """Job `seq`'s steps newer than `after_id`, oldest first."""
        rows = self.db.query(
            "SELECT id, at, status, message FROM job_steps WHERE job_seq = ? AND id > ? ORDER BY id", (seq, after_id)
        )
        return [JobStep(r["id"], r["at"], r["status"], r["message"]) for r in rows]

    def running(self) -> list[sqlite3.Row]:
        return self.db.query("SELECT seq, worker_pid, status_message FROM jobs WHERE status = 'RUNNING'")

    def has_queued(self) -> bool:
        return bool(self.db.query("SELECT 1 FROM jobs WHERE status = 'CREATED' LIMIT 1"))

    # Transitions ---------------------------------------------------------------------------------------------

    def claim_next(self) -> int | None:
        """The oldest CREATED job, now RUNNING in this process; None when the queue is empty."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT seq FROM jobs WHERE status = 'CREATED' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET worker_pid = ? WHERE seq = ?", (os.getpid(), row["seq"]))
            _record_step(conn, row["seq"], "RUNNING", f"Started by packaging worker {os.getpid()}.")
            return row["seq"]

    def progress(self, seq: int, message: str) -> None:
        with self.db.transaction() as conn:
            _record_step(conn, seq, "RUNNING", message)

    def succeed(self, seq: int, message: str, output: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET output = ? WHERE seq = ?", (json.dumps(output), seq))
            _record_step(conn, seq, "SUCCEEDED", message)

    def fail(self, seq: int, message: str) -> None:
        with self.db.transaction() as conn:
            _fail(conn, seq, message)

    def fail_if_still_running(self, seq: int, worker_pid: int, message: str) -> None:
        """Fail the job unless it finished (or another process failed it) since `worker_pid` was seen running it."""
        with self.db.transaction() as conn:
            still = "SELECT 1 FROM jobs WHERE seq = ? AND status = 'RUNNING' AND worker_pid = ?"
            if conn.execute(still, (seq, worker_pid)).fetchone() is not None:
                _fail(conn, seq, message)
