"""Brings the shipped tuning records up to date with the reference model's tasks as the packager now extracts
them: records of workloads the model no longer has are dropped, and tasks without a record are tuned here
(only those) and their best record added. Run after a change to how modules are lowered (e.g. after
compiler/build/scalar_constants.py changed two kernels' workloads):

    python scripts/refresh-shipped-records.py --trials-per-task 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import onnx


def _tasks(model_path: Path, metadata_path: Path, arch: str, mcpu: str) -> list:
    from compiler.build.targets import resolve_target
    from compiler.build.tuning import tuning_tasks
    from compiler.build.tvm_build import import_model, pin_input_shape
    from compiler.models.contract import inspect_model

    model = onnx.load(str(model_path))
    spec = inspect_model(model, None, json.loads(metadata_path.read_text()))
    target = resolve_target(
        {"TargetPlatform": {"Os": "LINUX", "Arch": arch.upper()}, "CompilerOptions": json.dumps({"mcpu": mcpu})}
    )
    return tuning_tasks(import_model(pin_input_shape(model, spec), spec), target)[2]


def _tune(tasks: list, work: str, trials_per_task: int, database: object) -> None:
    import time

    import tvm.s_tir.meta_schedule as ms

    from compiler.build.tuning import TRIALS_PER_ROUND, _make_measurers, seed_with_search_free

    builder, runner, callback = _make_measurers(work, time.time() + 3600 * len(tasks), lambda _: None)
    seed_with_search_free(tasks, tasks[0].target, database, builder, runner)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, work)
    ms.tune.tune_tasks(
        tasks=contexts,
        task_weights=weights,
        work_dir=work,
        max_trials_global=trials_per_task * len(tasks),
        max_trials_per_task=trials_per_task,
        num_trials_per_iter=TRIALS_PER_ROUND,
        builder=builder,
        runner=runner,
        database=database,
        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), callback],
    )


def refresh(folder: Path, arch: str, mcpu: str, model: tuple[Path, Path], trials_per_task: int) -> None:
    import tvm.s_tir.meta_schedule as ms

    from compiler.build.tuning import write_record_set

    tasks = _tasks(*model, arch, mcpu)
    shipped = ms.database.JSONDatabase(work_dir=str(folder), allow_missing=False)
    with tempfile.TemporaryDirectory(prefix="refresh-records-") as work:
        (Path(work) / "db").mkdir()
        fresh = ms.database.JSONDatabase(work_dir=str(Path(work) / "db"))
        missing = [t for t in tasks if not shipped.has_workload(t.dispatched[0])]
        print(f"{folder.name}: {len(tasks)} tasks, {len(missing)} without a record: {[t.task_name for t in missing]}")
        if missing:
            _tune(missing, work, trials_per_task, fresh)
        best = []
        for task in tasks:
            source = shipped if shipped.has_workload(task.dispatched[0]) else fresh
            top = source.get_top_k(source.commit_workload(task.dispatched[0]), 1)
            if not top:
                raise SystemExit(f"{folder.name}: no measured record for {task.task_name}")
            best.append(top[0])
    write_record_set(folder, best)
    print(f"{folder.name}: wrote the best record of each of {len(best)} tasks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials-per-task", type=int, default=64, help="search budget per task lacking a record")
    args = parser.parse_args()
    from compiler.build.tuning import SHIPPED_RECORDS, SHIPPED_SETS
    from compiler.models.reference_model import build_reference_model

    with tempfile.TemporaryDirectory(prefix="reference-") as out:
        reference = build_reference_model(Path(out))
        for arch, sets in SHIPPED_SETS.items():
            for mcpu, _features in sets:
                refresh(
                    SHIPPED_RECORDS / f"{arch}-{mcpu}",
                    arch,
                    mcpu,
                    (reference.model_path, reference.metadata_path),
                    args.trials_per_task,
                )


if __name__ == "__main__":
    main()
