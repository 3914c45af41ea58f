"""The packaging worker process: claims queued jobs one at a time and runs the pipeline.

Started detached by `WorkerPool.ensure_worker`; exits when the queue is empty.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import traceback

from compiler.database import Database
from compiler.job_steps import fail_job, record_step
from compiler.jobs import pid_is_worker
from compiler.pipeline import PackagingFailure, run_pipeline
from compiler.scratch import remove_orphaned
from compiler.service import Service
from compiler.settings import Settings
from edge_agent.cpu_threads import configure_thread_pool

log = logging.getLogger("lookout_edge.worker")


def _claim_next(db: Database) -> int | None:
    with db.transaction() as conn:
        row = conn.execute("SELECT seq FROM jobs WHERE status = 'CREATED' ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        conn.execute("UPDATE jobs SET worker_pid = ? WHERE seq = ?", (os.getpid(), row["seq"]))
        record_step(conn, row["seq"], "RUNNING", f"Started by packaging worker {os.getpid()}.")
        return row["seq"]


def _fail(db: Database, seq: int, message: str) -> None:
    with db.transaction() as conn:
        fail_job(conn, seq, message)


def _succeed(db: Database, seq: int, message: str, output: dict) -> None:
    with db.transaction() as conn:
        conn.execute("UPDATE jobs SET output = ? WHERE seq = ?", (json.dumps(output), seq))
        record_step(conn, seq, "SUCCEEDED", message)


def drain_queue(service: Service) -> int:
    """Run queued jobs until none is left; returns how many ran."""
    ran = 0
    while (seq := _claim_next(service.db)) is not None:
        ran += 1
        try:
            result = run_pipeline(service, seq)
        except PackagingFailure as exc:
            _fail(service.db, seq, str(exc))
        except Exception as exc:
            log.error("job %s crashed:\n%s", seq, traceback.format_exc())
            _fail(
                service.db,
                seq,
                f"Internal error while packaging: {type(exc).__name__}: {exc}. "
                "See the worker log in the data directory's logs/ folder.",
            )
        else:
            _succeed(
                service.db,
                seq,
                f"Packaging succeeded. {result.notes} Deploy the component with greengrass-cli "
                "(export-component writes the local layout) or a cloud deployment.",
                result.output,
            )
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description="lookout-edge packaging worker (started by the service)")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    configure_thread_pool()  # before any TVM kernel runs: tuning measures on the threads the agent will use
    service = Service(Settings.from_env(args.data_dir), recover=False)
    for folder in remove_orphaned(service.settings.data_dir, pid_is_worker):
        log.info("removed %s, left by a packaging worker that stopped", folder)
    pool = service.workers
    while True:
        with pool.slot() as index:
            if index is None:
                return  # the pool is full; a running worker will take the queued jobs
            drain_queue(service)
        # A job queued after the last claim but while this worker held its slot would otherwise wait.
        if not service.db.query("SELECT 1 FROM jobs WHERE status = 'CREATED' LIMIT 1"):
            return


if __name__ == "__main__":
    main()
