"""The packaging worker process: claims queued jobs one at a time and runs the pipeline.

Started detached by `WorkerPool.ensure_worker`; exits when the queue is empty.
"""

from __future__ import annotations

import argparse
import logging
import traceback

from compiler.api.service import Service
from compiler.greengrass.cloud_registration import open_greengrass_cloud
from compiler.jobs.failures import PackagingFailure
from compiler.jobs.operations import pid_is_worker
from compiler.jobs.pipeline import JobContext, run_pipeline
from compiler.jobs.scratch import remove_orphaned
from compiler.settings import Settings
from edge_agent.models.cpu_threads import configure_thread_pool

log = logging.getLogger("lookout_edge.worker")


def drain_queue(service: Service) -> int:
    """Run queued jobs until none is left; returns how many ran."""
    store, ran = service.jobs.store, 0
    settings = service.settings
    cloud = open_greengrass_cloud(settings)
    context = JobContext(store, service.registry, service.catalog, service.output_store, settings, cloud)
    while (seq := store.claim_next()) is not None:
        ran += 1
        try:
            result = run_pipeline(context, seq)
        except PackagingFailure as exc:
            store.fail(seq, str(exc))
        except Exception as exc:
            log.error("job %s crashed:\n%s", seq, traceback.format_exc())
            store.fail(
                seq,
                f"Internal error while packaging: {type(exc).__name__}: {exc}. "
                "See the worker log in the data directory's logs/ folder.",
            )
        else:
            store.succeed(
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
        if not service.jobs.store.has_queued():
            return


if __name__ == "__main__":
    main()
