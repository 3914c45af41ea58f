"""MetaSchedule tuning records for a build: a search with a trial budget and time cap (CPU targets this machine
can run), persistent records per target, progress; records from elsewhere for the targets it cannot run.

Candidates are compiled in forked children with a time limit (compiler.build.candidate_builds) and timed in this
process (no RPC or popen workers: their start-up alone outlasts the default builder timeout on 2 cores).
Records go to a JSON database per target under the service's data folder, so re-packaging the same model, or
another sharing its layers, reuses them. Records shipped with the service
(`compiler/build/tuning_records/<arch>-<mcpu>/`) and a database the user names are consulted too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.api.errors import ValidationException
from compiler.build.candidate_builds import build_candidates, failure_text
from compiler.build.cost_model_store import load_cost_model, save_cost_model
from compiler.build.search_free import register_tensor_intrinsics, search_free_records
from compiler.build.targets import TargetSpec
from compiler.jobs.scratch import scratch_folder
from compiler.settings import Settings
from edge_agent.models.cpu_threads import configure_thread_pool

MAX_TRIALS = 20000
DEFAULT_MINUTES = 30.0
TRIALS_PER_ROUND = 16
SHIPPED_RECORDS = Path(__file__).parent / "tuning_records"
# Shipped record sets per architecture, each tuned for one CPU, best first: a target gets the first whose
# vector features its own CPU has (schedules written for 16-lane AVX-512 run 4× slower on AVX2-only CPUs).
SHIPPED_SETS = {"x86_64": (("znver4", ("avx512f", "avx512bw")), ("core-avx2", ("avx2", "fma")))}
PROGRESS_EVERY_S = 5.0
BUILD_LIMIT_S = 60.0  # one candidate's compile; ~1 s is usual, pathological ones run for many minutes
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TuningRequest:
    """What the job asked for: trials to search (0: use stored records only), a time cap, an extra database."""

    trials: int = 0
    minutes: float = DEFAULT_MINUTES
    database: Path | None = None
    shipped_records: bool = True  # the service's setting: also read compiler/build/tuning_records/


def tuning_request(options: dict[str, Any], settings: Settings) -> TuningRequest:
    """Read the tuning keys of the parsed CompilerOptions (ValidationException names the key and the rule); the
    service's settings give the default trial budget and whether shipped records are used."""
    trials = options.get("tuning-trials", settings.default_tuning_trials)
    if isinstance(trials, bool) or not isinstance(trials, int) or not 0 <= trials <= MAX_TRIALS:
        raise ValidationException(
            f"Invalid Configuration.Greengrass: compiler option 'tuning-trials' must be an integer from 0 to "
            f"{MAX_TRIALS}, got {trials!r}."
        )
    minutes = options.get("tuning-minutes", DEFAULT_MINUTES)
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= 24 * 60:
        raise ValidationException(
            "Invalid Configuration.Greengrass: compiler option 'tuning-minutes' must be a number of minutes "
            f"above 0 and at most 1440, got {minutes!r}."
        )
    database = options.get("tuning-database")
    if database is not None and (
        not isinstance(database, str) or not (Path(database) / "database_workload.json").is_file()
    ):
        raise ValidationException(
            "Invalid Configuration.Greengrass: compiler option 'tuning-database' must name a folder holding a "
            f"MetaSchedule JSON database (database_workload.json, database_tuning_record.json), got {database!r}."
        )
    return TuningRequest(int(trials), float(minutes), Path(database) if database else None, settings.shipped_records)


def database_key(target: TargetSpec) -> str:
    """Records are kept per target: architecture, then the GPU, or the CPU and its features."""
    if target.accelerator == "nvidia":
        return f"{target.arch}-{target.gpu_code}"
    return "-".join(p for p in (target.arch, target.mcpu or "generic", "".join(target.mattr)) if p)


@dataclass
class TuningReport:
    """What the tuning step did, for the manifest and the job's StatusMessage."""

    source: str
    trials_run: int = 0
    seconds: float = 0.0
    records_used: int = 0
    tasks: int = 0  # kernels that could take a tuning record (0: not known, e.g. GPU builds with DLight)
    search_free: int = 0  # kernels without a record given the search-free schedule (compiler/build/search_free.py)
    databases: list[str] = field(default_factory=list)

    def describe(self) -> str:
        searched = f"; {self.trials_run} trials in {self.seconds / 60:.1f} min" if self.trials_run else ""
        of_tasks = f" of {self.tasks}" if self.tasks else ""
        rules = f"; search-free schedules: {self.search_free}" if self.search_free else ""
        return f"Schedules: {self.source}{searched}; tuned kernels applied: {self.records_used}{of_tasks}{rules}."

    def untuned_warning(self, target: TargetSpec) -> str:
        """What to tell the user when some kernels kept TVM's default (naive) CPU schedules; else ''."""
        untuned = self.tasks - self.records_used - self.search_free
        if untuned <= 0:
            return ""
        remedy = (
            "give a tuning-database tuned on such a device (CompilerOptions 'tuning-database')"
            if target.is_cross
            else 'package again with CompilerOptions {"tuning-trials": 2000, "tuning-minutes": 30} to tune them '
            "here (records are kept and reused by later jobs), or give a tuning-database"
        )
        return (
            f" Warning: {untuned} of {self.tasks} kernels run on TVM's default (untuned) schedules, which can be "
            f"an order of magnitude slower than ONNX Runtime; {remedy}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "trials_run": self.trials_run,
            "seconds": round(self.seconds, 1),
            "records_used": self.records_used,
            "tasks": self.tasks,
            "search_free": self.search_free,
            "databases": self.databases,
        }


class TimeBudgetSpent(Exception):
    """Raised through MetaSchedule by the progress callback to end the search at the time cap."""


def _make_measurers(scratch: str, deadline: float, progress: Callable[[int], None]) -> tuple[Any, Any, Any]:
    """A builder compiling candidates in forked children (each within BUILD_LIMIT_S), a runner timing them in
    this process, and a callback that reports progress and ends the search at `deadline` (records measured
    so far are already in the database). The first round is built whatever the deadline, so even a cap
    shorter than one round (a busy machine, a tiny budget) ends with measured records."""
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

    entry_names: dict[str, str] = {}
    rounds_built = [0]

    @derived_object
    class ForkedBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            candidates = [(b.mod, b.target) for b in build_inputs]
            round_deadline = deadline if rounds_built[0] else max(deadline, time.time() + BUILD_LIMIT_S)
            rounds_built[0] += 1
            built = build_candidates(candidates, scratch, BUILD_LIMIT_S, round_deadline, os.cpu_count() or 1)
            for build_input, candidate in zip(build_inputs, built, strict=True):
                if candidate.library is not None:
                    entry_names[candidate.library] = build_input.mod.get_global_vars()[0].name_hint
            return [BuilderResult(c.library, c.error) for c in built]

    @derived_object
    class Measured(PyRunnerFuture):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self._result = result

        def done(self) -> bool:
            return True

        def result(self) -> Any:
            return self._result

    @derived_object
    class InProcessRunner(PyRunner):
        def run(self, runner_inputs: list) -> list:
            device = tvm.cpu()
            futures = []
            for runner_input in runner_inputs:
                library = runner_input.artifact_path  # MetaSchedule removes its folder after this round
                try:
                    module = tvm.runtime.load_module(library)
                    args = [
                        tvm.runtime.tensor(
                            np.random.default_rng(0).random([int(d) for d in a.shape]).astype(a.dtype), device
                        )
                        for a in runner_input.args_info
                    ]
                    timer = module.time_evaluator(entry_names.pop(library), device, number=3, repeat=1)
                    futures.append(Measured(RunnerResult([timer(*args).mean], None)))
                except Exception as exc:
                    futures.append(Measured(RunnerResult(None, failure_text(exc))))
            return futures

    @derived_object
    class ProgressCallback(PyMeasureCallback):
        def apply(self, task_scheduler: Any, task_id: int, candidates: list, builds: list, runs: list) -> None:
            progress(len(candidates))
            if time.time() > deadline:
                raise TimeBudgetSpent()

    return ForkedBuilder(), InProcessRunner(), ProgressCallback()


def seed_with_search_free(tasks: list, target: Any, database: Any, builder: Any, runner: Any) -> int:
    """Measure the search-free schedule of each task in `tasks` that `database` holds no record of, and commit it
    with its measured time: the search then starts from it (MetaSchedule's evolutionary search draws part of its
    first population from the best records) and can only end at or below it. The number of records added."""
    import tvm.s_tir.meta_schedule as ms

    from compiler.build.search_free import search_free_schedule

    seeds = []
    for task in tasks:
        mod = task.dispatched[0]
        if _record_count(database, mod, 1):
            continue
        schedule = search_free_schedule(mod, target)
        if schedule is not None:
            seeds.append((mod, schedule))
    if not seeds:
        return 0
    built = builder.build([ms.builder.BuilderInput(schedule.mod, target) for _, schedule in seeds])
    inputs, measured = [], []
    for (mod, schedule), result in zip(seeds, built, strict=True):
        if result.error_msg is None:
            args = ms.arg_info.ArgInfo.from_prim_func(mod[mod.get_global_vars()[0]])
            inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu", args))
            measured.append((mod, schedule, args))
    added = 0
    for (mod, schedule, args), future in zip(measured, runner.run(inputs), strict=True):
        run = future.result()
        if run.error_msg is None:
            record = ms.database.TuningRecord(schedule.trace, database.commit_workload(mod), run.run_secs, target, args)
            database.commit_tuning_record(record)
            added += 1
    return added


def write_record_set(folder: Path, records: list) -> None:
    """Replace the MetaSchedule JSON database in `folder` with `records` (TuningRecords, one per workload): how
    the shipped sets are written (scripts/ship-tuning-records.py, scripts/refresh-shipped-records.py)."""
    import tvm.s_tir.meta_schedule as ms

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("database_workload.json", "database_tuning_record.json"):
        (folder / name).unlink(missing_ok=True)
    database = ms.database.JSONDatabase(work_dir=str(folder))
    for record in records:
        workload = database.commit_workload(record.workload.mod)
        database.commit_tuning_record(
            ms.database.TuningRecord(record.trace, workload, record.run_secs, record.target, record.args_info)
        )


def _record_count(database: Any, module: Any, most: int = 1 << 20) -> int:
    if not database.has_workload(module):
        return 0
    return len(database.get_top_k(database.commit_workload(module), most))


def _records_for(database: Any, tasks: list) -> int:
    return sum(_record_count(database, task.dispatched[0]) for task in tasks)


def shipped_set(target: TargetSpec) -> Path | None:
    """The shipped records that suit `target`'s CPU: its own set, else the first set whose vector features it has."""
    if target.accelerator is not None:
        return None
    from tvm.target import codegen

    from compiler.build.tvm_build import tvm_target

    for mcpu, features in SHIPPED_SETS.get(target.arch, ()):
        folder = SHIPPED_RECORDS / f"{target.arch}-{mcpu}"
        if mcpu == target.mcpu or codegen.llvm_cpu_has_features(list(features), tvm_target(target)):
            return folder
    return None


def records_folder(target: TargetSpec, data_dir: Path) -> Path:
    """Where the service keeps `target`'s tuning records and cost model."""
    return data_dir / "tuning" / database_key(target)


def _open_databases(target: TargetSpec, data_dir: Path, request: TuningRequest) -> tuple[Any, list[Any], list[str]]:
    """The writable per-target database, every database to read from, and names for them."""
    import tvm.s_tir.meta_schedule as ms

    own_dir = records_folder(target, data_dir)
    own_dir.mkdir(parents=True, exist_ok=True)
    own = ms.database.JSONDatabase(work_dir=str(own_dir))
    readers, names = [own], [f"service records ({own_dir.name})"]
    shipped = shipped_set(target) if request.shipped_records else None
    if shipped is not None:
        readers.append(ms.database.JSONDatabase(work_dir=str(shipped), allow_missing=False))
        names.append(f"shipped records ({shipped.name})")
    if request.database is not None:
        readers.append(ms.database.JSONDatabase(work_dir=str(request.database), allow_missing=False))
        names.append(f"tuning-database {request.database.name}")
    return own, readers, names


def tuning_tasks(mod: Any, target: TargetSpec, winograd: bool = True) -> tuple[Any, Any, list]:
    """The imported Relax module `mod` as it is tuned and compiled for `target`, the TVM target its tasks are
    measured for, and its tuning tasks. For CPU targets: 3×3 convolutions by Winograd where `winograd` and they
    are eligible (compiler/build/winograd.py), the other convolutions packed (compiler/build/packed_conv.py),
    exponentials vectorisable (compiler/build/fast_math.py). Then scalar constants are passed as arguments
    (compiler/build/scalar_constants.py) and Relax's "zero" pipeline runs."""
    import tvm
    import tvm.s_tir.meta_schedule as ms
    from tvm import relax

    from compiler.build.depthwise_conv import use_depthwise_convolutions
    from compiler.build.fast_math import use_fast_math
    from compiler.build.packed_conv import use_packed_convolutions
    from compiler.build.scalar_constants import lift_scalar_constants
    from compiler.build.search_free import simd_lanes
    from compiler.build.tvm_build import tvm_target as build_target
    from compiler.build.winograd import use_winograd

    tvm_target = build_target(target)
    if target.accelerator != "nvidia":
        lanes = simd_lanes(tvm_target)
        mod = use_packed_convolutions(use_winograd(mod) if winograd else mod, lanes)
        mod = use_fast_math(use_depthwise_convolutions(mod, lanes))
        # CPU kernels are scheduled and measured for the threads the agent runs them on (one per physical core).
        tvm_target = tvm.target.Target({**tvm_target.export(), "num-cores": configure_thread_pool()})
    mod = relax.get_pipeline("zero")(lift_scalar_constants(mod))
    return mod, tvm_target, ms.relax_integration.extract_tasks(mod, tvm_target)


def _has_record(readers: list, task: Any) -> bool:
    return any(_record_count(r, task.dispatched[0], 1) for r in readers)


def _winograd_covered(readers: list, tasks: list) -> bool:
    """Whether every Winograd kernel of `tasks` has a tuning record. Winograd pays only with tuned transforms:
    on the search-free schedules its input and output transforms cost more than the multiplications it saves
    (U-Net-like at 256², Zen 4: 3.2× ONNX Runtime with it, 1.3× with packed direct convolutions)."""
    return all(_has_record(readers, t) for t in tasks if "winograd" in t.task_name)


def schedule_module(
    mod: Any, target: TargetSpec, data_dir: Path, request: TuningRequest, report: Progress
) -> tuple[Any, TuningReport]:
    """Tune (within the request's budget, where this machine can measure the target) and apply the best
    records known for `target` to the imported Relax module `mod`.

    CPU tasks without records get the search-free schedules (compiler/build/search_free.py); CUDA tasks DLight's.
    """
    import tvm
    import tvm.s_tir.meta_schedule as ms
    from tvm import relax

    gpu = target.accelerator == "nvidia"
    if gpu and request.database is None:
        return mod, TuningReport(source="DLight default GPU schedules (no tuning-database given)")
    imported = mod
    mod, tvm_target, tasks = tuning_tasks(imported, target)
    own, readers, names = _open_databases(target, data_dir, request)
    if not gpu and not _winograd_covered(readers, tasks):  # a search then refines what default packaging uses
        mod, tvm_target, tasks = tuning_tasks(imported, target, winograd=False)
    wanted = request.trials - _records_for(own, tasks)
    tuning = TuningReport(source="stored tuning records", databases=names)
    if request.trials and wanted > 0:
        if target.is_cross or gpu:
            report(
                f"{target.describe()} cannot be measured on this machine: using the tuning records given "
                "(tuning-database), else search-free schedules."
            )
        else:
            folder = records_folder(target, data_dir)
            tuning = _search(mod, tvm_target, own, request, wanted, tasks, report, names, data_dir, folder)
    database = readers[0] if len(readers) == 1 else ms.database.UnionDatabase(*readers)
    untuned = [t for t in tasks if not _has_record(readers, t)]
    tuning.records_used = len(tasks) - len(untuned)
    tuning.tasks = len(tasks)
    if not gpu:
        rules = ms.database.MemoryDatabase()
        tuning.search_free = search_free_records(untuned, tvm_target, rules)
        database = ms.database.OrderedUnionDatabase(database, rules)
    if tuning.records_used == 0:
        tuning.source = (
            "DLight default GPU schedules (the tuning records do not cover this model)"
            if gpu
            else "search-free schedules (no tuning records for this target and model)"
        )
    with tvm_target, database, tvm.transform.PassContext(opt_level=3):
        mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    return mod, tuning


META_SCHEDULE_LOGGER = "tvm.s_tir.meta_schedule"


@contextmanager
def _meta_schedule_logging() -> Iterator[None]:
    """Let MetaSchedule set up its loggers for one search from a clean state, then close what it opened.

    MetaSchedule re-configures its loggers with `logging.config.dictConfig` on every search, naming the
    handlers already on its logger; a handler without a name there (one added by anyone else) makes that fail,
    and the file handlers of earlier searches would stay open on folders already deleted.
    """
    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    saved = logger.handlers[:]
    for handler in saved:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        names = [
            n
            for n in logging.root.manager.loggerDict
            if n == META_SCHEDULE_LOGGER or n.startswith(META_SCHEDULE_LOGGER + ".")
        ]
        for name in names:
            child = logging.getLogger(name)
            for handler in child.handlers[:]:
                child.removeHandler(handler)
                handler.close()
        for handler in saved:
            logger.addHandler(handler)


def _search(
    mod: Any,
    target: Any,
    own: Any,
    request: TuningRequest,
    trials: int,
    tasks: list,
    report: Progress,
    names: list,
    data_dir: Path,
    records: Path,
) -> TuningReport:
    import tvm.s_tir.meta_schedule as ms

    start = time.time()
    deadline = start + request.minutes * 60
    state = {"trials": 0, "last": 0.0}

    def progress(measured: int) -> None:
        state["trials"] += measured
        if time.time() - state["last"] >= PROGRESS_EVERY_S:
            state["last"] = time.time()
            elapsed = time.time() - start
            report(
                f"Tuning {len(tasks)} tasks with MetaSchedule: {min(state['trials'], trials)}/{trials} trials, "
                f"{elapsed / 60:.1f} of at most {request.minutes:g} min."
            )

    stopped = False
    register_tensor_intrinsics()
    cost_model = load_cost_model(records, int(target.attrs["num-cores"]))
    with scratch_folder(data_dir, "tune") as work, _meta_schedule_logging():
        builder, runner, callback = _make_measurers(work, deadline, progress)
        seed_with_search_free(tasks, target, own, builder, runner)
        try:
            ms.relax_integration.tune_relax(
                mod=mod,
                params={},
                target=target,
                work_dir=work,
                max_trials_global=trials,
                num_trials_per_iter=TRIALS_PER_ROUND,
                builder=builder,
                runner=runner,
                database=own,
                cost_model=cost_model,
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), callback],
                strategy=ms.search_strategy.EvolutionarySearch(population_size=256, genetic_num_iters=2),
            )
        except Exception:  # TimeBudgetSpent comes back through TVM's FFI as another exception type
            if time.time() <= deadline:
                raise
            stopped = True
    save_cost_model(cost_model, records)  # after MetaSchedule's loggers are closed: it logs the save
    return TuningReport(
        source="tuned here (stopped at the time budget)" if stopped else "tuned here",
        trials_run=state["trials"],
        seconds=time.time() - start,
        databases=names,
    )
