"""A job's status changes, each kept as a step: DescribeModelPackagingJob shows the last, `--wait` shows all."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from compiler.database import Database


@dataclass(frozen=True)
class JobStep:
    """One status change of a job, in the order they happened (`id` grows)."""

    id: int
    at: float
    status: str
    message: str


def record_step(conn: sqlite3.Connection, seq: int, status: str, message: str) -> None:
    """Set job `seq`'s status and message, and keep them as its next step (inside the caller's transaction)."""
    now = time.time()
    conn.execute(
        "UPDATE jobs SET status = ?, status_message = ?, updated = ? WHERE seq = ?", (status, message, now, seq)
    )
    conn.execute(
        "INSERT INTO job_steps (job_seq, at, status, message) VALUES (?, ?, ?, ?)", (seq, now, status, message)
    )


def fail_job(conn: sqlite3.Connection, seq: int, message: str) -> None:
    """Mark job `seq` FAILED and release the component version it had reserved."""
    record_step(conn, seq, "FAILED", message)
    conn.execute("DELETE FROM components WHERE job_seq = ? AND state = 'RESERVED'", (seq,))


def steps_after(db: Database, seq: int, after_id: int = 0) -> list[JobStep]:
    """Job `seq`'s steps newer than `after_id`, oldest first."""
    rows = db.query(
        "SELECT id, at, status, message FROM job_steps WHERE job_seq = ? AND id > ? ORDER BY id", (seq, after_id)
    )
    return [JobStep(r["id"], r["at"], r["status"], r["message"]) for r in rows]
