"""The registry database: SQLite in WAL mode, schema and transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    created REAL NOT NULL,
    seq INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS models (
    project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    arn TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    model_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    description TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (project, version)
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    configuration TEXT NOT NULL,
    plan TEXT,                      -- compiler/jobs/plan.py; NULL for jobs accepted before plans were stored
    description TEXT,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    component_name TEXT NOT NULL,
    component_version TEXT NOT NULL,
    output TEXT,
    worker_pid INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    UNIQUE (project, name)
);
CREATE TABLE IF NOT EXISTS job_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_steps_by_job ON job_steps (job_seq, id);
CREATE TABLE IF NOT EXISTS client_tokens (
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    result TEXT NOT NULL,           -- '' while the request runs; set in the transaction of its effect
    created REAL NOT NULL,
    claimer_pid INTEGER,            -- the process running the request (a dead one leaves a stale claim)
    PRIMARY KEY (operation, token)
);
CREATE TABLE IF NOT EXISTS components (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    arn TEXT NOT NULL,
    job_seq INTEGER NOT NULL,
    state TEXT NOT NULL,          -- RESERVED while its job runs, DEPLOYABLE once written
    bucket TEXT NOT NULL,
    recipe_keys TEXT,
    artifact_keys TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (name, version)
);
"""


# Columns added after the first release: a data directory made by an older version gets them at open.
ADDED_COLUMNS = {"client_tokens": {"claimer_pid": "INTEGER"}, "jobs": {"plan": "TEXT"}}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


class Database:
    """A connection per call site; writes go through `transaction()` (BEGIN IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)
        finally:
            conn.close()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        conn = self.connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
