"""MetaSchedule tuning in the packaging pipeline: budget options, in-process search with progress, records
kept per target and reused, targets that cannot be measured here."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.api.errors import ValidationException
from compiler.build.candidate_builds import build_candidates
from compiler.build.cost_model_store import load_cost_model
from compiler.build.parity import golden_input, run_onnx_runtime
from compiler.build.targets import parse_compiler_options, resolve_target
from compiler.build.tuning import (
    SHIPPED_RECORDS,
    SHIPPED_SETS,
    TuningRequest,
    schedule_module,
    shipped_set,
    tuning_request,
    tuning_tasks,
)
from compiler.build.tvm_build import import_model, pin_input_shape, tvm_target
from compiler.models.contract import inspect_model
from compiler.settings import Settings
from edge_agent.bundle.output_parity import compare
from tests.agent_harness import PackagingRequest, package_models
from tests.conftest import make_service, stop_workers
from tests.models import classifier

X86 = {"Os": "LINUX", "Arch": "X86_64"}


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ('{"tuning-trials": -1}', "'tuning-trials' must be an integer from 0 to 20000"),
        ('{"tuning-trials": "64"}', "'tuning-trials' must be an integer"),
        ('{"tuning-trials": true}', "'tuning-trials' must be an integer"),
        ('{"tuning-minutes": 0}', "'tuning-minutes' must be a number of minutes above 0"),
        ('{"tuning-database": "/nonexistent"}', "'tuning-database' must name a folder holding a MetaSchedule"),
    ],
)
def test_tuning_options_are_checked_at_start(options: str, words: str) -> None:
    with pytest.raises(ValidationException) as error:
        tuning_request(parse_compiler_options(options), Settings(data_dir=Path("/unused")))
    assert words in error.value.message


@pytest.mark.parametrize(
    ("mcpu", "expected"),
    [
        ("znver4", "x86_64-znver4"),
        ("skylake-avx512", "x86_64-znver4"),  # AVX-512: the 16-lane schedules
        ("core-avx2", "x86_64-core-avx2"),
        ("znver3", "x86_64-core-avx2"),  # AVX2 only: the 8-lane schedules
        ("x86-64", None),  # no AVX2: TVM's defaults unless tuned
    ],
)
def test_shipped_records_are_chosen_by_the_target_cpu_features(mcpu: str, expected: str | None) -> None:
    target = resolve_target({"TargetPlatform": X86, "CompilerOptions": json.dumps({"mcpu": mcpu})})
    chosen = shipped_set(target)
    assert (chosen.name if chosen else None) == expected


def test_every_shipped_record_set_holds_a_record_for_every_reference_model_task(reference_model) -> None:
    import tvm.s_tir.meta_schedule as ms

    model = onnx.load(str(reference_model.model_path))
    spec = inspect_model(model, None, json.loads(reference_model.metadata_path.read_text()))
    for arch, sets in SHIPPED_SETS.items():
        for mcpu, _ in sets:
            folder = SHIPPED_RECORDS / f"{arch}-{mcpu}"
            records = (folder / "database_tuning_record.json").read_text().splitlines()
            assert all(f'"mcpu":"{mcpu}"' in line for line in records), f"{arch}-{mcpu}: records tuned for another CPU"
            target = resolve_target(
                {"TargetPlatform": {"Os": "LINUX", "Arch": arch.upper()}, "CompilerOptions": json.dumps({"mcpu": mcpu})}
            )
            _, _, tasks = tuning_tasks(import_model(pin_input_shape(model, spec), spec), target)
            database = ms.database.JSONDatabase(work_dir=str(folder), allow_missing=False)
            missing = [task.task_name for task in tasks if not database.has_workload(task.dispatched[0])]
            assert not missing, f"{arch}-{mcpu}: no records for {missing}"
            assert len(records) == len(tasks), f"{arch}-{mcpu}: records for workloads the model no longer has"


def test_candidates_compile_in_child_processes_and_a_compile_past_its_time_is_stopped(tmp_path) -> None:
    import tvm
    from tvm import te

    data = te.placeholder((256,), name="data")
    plus_one = te.compute((256,), lambda i: data[i] + 1.0, name="plus_one")
    mod, target = tvm.IRModule({"main": te.create_prim_func([data, plus_one])}), tvm.target.Target("llvm")
    good, broken = build_candidates([(mod, target), ("not a module", target)], str(tmp_path), 60, time.time() + 60, 2)
    assert good.error is None and broken.library is None and "Error" in broken.error
    values = np.arange(256, dtype=np.float32)
    out = tvm.runtime.empty((256,), "float32", tvm.cpu())
    tvm.runtime.load_module(good.library)["main"](tvm.runtime.tensor(values), out)
    assert np.array_equal(out.numpy(), values + 1)

    for limit_s, deadline in ((0.0, time.time() + 60), (60.0, time.time())):
        (stopped,) = build_candidates([(mod, target)], str(tmp_path), limit_s, deadline, 1)
        assert stopped.library is None and "longer than" in stopped.error


def test_a_failed_fork_stops_the_compiles_already_running(tmp_path, monkeypatch) -> None:
    import os

    import tvm
    from tvm import te

    import compiler.build.candidate_builds as builds

    data = te.placeholder((256,), name="data")
    mod = tvm.IRModule({"main": te.create_prim_func([data, te.compute((256,), lambda i: data[i] * 2.0)])})
    started: list[int] = []
    real_fork = os.fork

    def fork_once() -> int:
        if started:
            raise OSError("Resource temporarily unavailable")
        pid = real_fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(builds.os, "fork", fork_once)
    with pytest.raises(OSError, match="temporarily unavailable"):
        build_candidates([(mod, tvm.target.Target("llvm"))] * 2, str(tmp_path), 60, time.time() + 60, 2)
    with pytest.raises(ChildProcessError):  # stopped and reaped, not left compiling
        os.waitpid(started[0], os.WNOHANG)


def test_tuning_defaults_come_from_the_service() -> None:
    settings = Settings(data_dir=Path("/unused"), default_tuning_trials=32, shipped_records=False)
    assert tuning_request({}, settings) == TuningRequest(trials=32, shipped_records=False)
    resolve_target({"TargetPlatform": X86, "CompilerOptions": '{"tuning-trials": 8, "mcpu": "core-avx2"}'})


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tuning") / "classifier.onnx"
    onnx.save(classifier(batch=1, size=32), str(path))
    return path


@pytest.mark.slow
def test_search_reports_progress_and_stores_records_that_the_next_run_reuses(small_model: Path, tmp_path) -> None:
    model = onnx.load(str(small_model))
    spec = inspect_model(model, None, {})
    target = resolve_target({"TargetPlatform": X86})
    messages: list[str] = []
    mod, report = schedule_module(import_model(model, spec), target, tmp_path, TuningRequest(trials=8), messages.append)
    assert report.source.startswith("tuned here") and report.trials_run >= 8 and report.records_used >= 1
    # The search started from each task's measured search-free schedule: every kernel holds a record.
    assert report.records_used == report.tasks and report.search_free == 0
    assert any(m.startswith("Tuning ") and "/8 trials" in m for m in messages), messages
    records = tmp_path / "tuning" / "x86_64-core-avx2" / "database_tuning_record.json"
    assert records.read_text().count("\n") >= 8
    # The cost model is kept beside the records, with what it learnt: the next search starts from it.
    assert load_cost_model(records.parent, 2).data_size >= 8
    assert not list(records.parent.glob(".cost_model*")), "a partial save was left behind"

    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.compile(mod, tvm_target(target)), tvm.cpu())
    tensor = golden_input(spec)
    tuned = {"scores": vm["main"](tvm.runtime.tensor(tensor)).numpy()}
    assert compare(run_onnx_runtime(model, spec, tensor), tuned).ok

    started = time.time()
    _, again = schedule_module(import_model(model, spec), target, tmp_path, TuningRequest(trials=8), messages.append)
    assert (again.source, again.trials_run) == ("stored tuning records", 0)
    assert again.records_used == report.records_used and time.time() - started < 30


@pytest.mark.slow
def test_the_search_stops_at_the_time_cap_and_keeps_what_it_measured(small_model: Path, tmp_path) -> None:
    """A cap shorter than one round (3 s; a round takes longer on a busy machine) still ends with the first round
    measured. A handler without a name on MetaSchedule's logger (anyone may add one) must not break the search."""
    import logging

    model = onnx.load(str(small_model))
    spec = inspect_model(model, None, {})
    target = resolve_target({"TargetPlatform": X86})
    foreign = logging.NullHandler()
    logging.getLogger("tvm.s_tir.meta_schedule").addHandler(foreign)
    started = time.time()
    try:
        _, report = schedule_module(
            import_model(model, spec), target, tmp_path, TuningRequest(trials=2000, minutes=0.05), lambda _: None
        )
    finally:
        logging.getLogger("tvm.s_tir.meta_schedule").removeHandler(foreign)
    assert report.source == "tuned here (stopped at the time budget)"
    assert 0 < report.trials_run < 2000 and report.records_used >= 1
    assert time.time() - started < 300
    meta_schedule_files = [
        h
        for name in logging.root.manager.loggerDict
        if name.startswith("tvm.s_tir.meta_schedule")
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.FileHandler)
    ]
    assert not meta_schedule_files, "the search left log files open"


def test_a_target_this_machine_cannot_measure_uses_records_or_search_free_schedules_and_says_so(
    small_model, tmp_path
) -> None:
    model = onnx.load(str(small_model))
    spec = inspect_model(model, None, {})
    target = resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}})
    messages: list[str] = []
    _, report = schedule_module(import_model(model, spec), target, tmp_path, TuningRequest(trials=8), messages.append)
    assert report.trials_run == 0 and report.source.startswith("search-free schedules")
    assert report.search_free == report.tasks > 0 and not report.untuned_warning(target)
    assert any("cannot be measured on this machine" in m for m in messages)


@pytest.mark.slow
def test_packaging_jobs_tune_within_the_budget_and_a_repackage_reuses_the_records(tmp_path, small_model) -> None:
    service = make_service(tmp_path / "data")
    target = {"TargetPlatform": X86, "CompilerOptions": '{"tuning-trials": 8, "tuning-minutes": 5}'}
    requests = [PackagingRequest("tuned", small_model, {}, "com.example.Tuned", v) for v in ("1.0.0", "2.0.0")]
    try:
        first = package_models(service, requests[:1], tmp_path / "gg", {"com.example.Tuned": target})
        second = package_models(service, requests[1:], tmp_path / "gg", {"com.example.Tuned": target})
    finally:
        stop_workers(service)

    def tuning_of(archive: Path) -> dict:
        with zipfile.ZipFile(archive) as zf:
            return json.loads(zf.read("manifest.json"))["compiler"]["tuning"]

    cold, warm = tuning_of(first["com.example.Tuned-1.0.0"]), tuning_of(second["com.example.Tuned-2.0.0"])
    assert cold["source"] == "tuned here" and cold["trials_run"] >= 8
    assert warm["source"] == "stored tuning records" and warm["trials_run"] == 0
    assert warm["records_used"] == cold["records_used"] >= 1
    assert np.isfinite(cold["seconds"])
