"""Packaging job semantics: idempotency, conflicts, queue limits, pagination, crash recovery."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import regex

from compiler.api.errors import (
    ConflictException,
    ResourceNotFoundException,
    ThrottlingException,
    ValidationException,
)
from compiler.api.validation import check_response
from tests.conftest import X86_CONFIGURATION, make_service, stop_workers, wait_for_job


def _project_with_model(service, model_file: Path, project: str = "p") -> None:
    service.call("CreateProject", {"ProjectName": project})
    service.call("CreateModel", {"ProjectName": project, "ModelFile": str(model_file)})


def _configuration(version: str | None = None, component: str = "com.example.Boards") -> dict:
    configuration = copy.deepcopy(X86_CONFIGURATION)
    configuration["Greengrass"]["ComponentName"] = component
    if version:
        configuration["Greengrass"]["ComponentVersion"] = version
    return configuration


def _start(service, **extra) -> str:
    request = {"ProjectName": "p", "ModelVersion": "latest", "Configuration": _configuration(), **extra}
    return service.call("StartModelPackagingJob", request)["JobName"]


def test_defaults_job_name_component_version_and_description(queue_only, classifier_file) -> None:
    _project_with_model(queue_only, classifier_file)
    job = _start(queue_only)
    assert len(job) == 36 and job.count("-") == 4  # a service-made UUID
    described = queue_only.call("DescribeModelPackagingJob", {"ProjectName": "p", "JobName": job})
    check_response("DescribeModelPackagingJob", described)
    description = described["ModelPackagingDescription"]
    assert description["Status"] == "CREATED" and description["ModelVersion"] == "1"
    assert description["ModelPackagingMethod"] == "Greengrass"
    assert description["ModelPackagingConfiguration"] == _configuration()
    row = queue_only.db.query("SELECT component_version FROM jobs WHERE name = ?", (job,))[0]
    assert row[0] == "1.0.0"


@pytest.mark.parametrize("prefix", ["../../../tmp/x/", "models/../../x/", "/absolute/", "a/./b/"])
def test_a_prefix_escaping_the_bucket_is_refused_at_the_call(queue_only, classifier_file, prefix: str) -> None:
    _project_with_model(queue_only, classifier_file)
    configuration = _configuration()
    configuration["Greengrass"]["S3OutputLocation"]["Prefix"] = prefix
    with pytest.raises(ValidationException, match=r"at 'configuration\.greengrass\.s3OutputLocation\.prefix'"):
        queue_only.call(
            "StartModelPackagingJob", {"ProjectName": "p", "ModelVersion": "1", "Configuration": configuration}
        )
    assert queue_only.call("ListModelPackagingJobs", {"ProjectName": "p"})["ModelPackagingJobs"] == []


def test_client_token_idempotency(queue_only, classifier_file) -> None:
    _project_with_model(queue_only, classifier_file)
    first = _start(queue_only, ClientToken="token-1")
    assert _start(queue_only, ClientToken="token-1") == first
    assert len(queue_only.call("ListModelPackagingJobs", {"ProjectName": "p"})["ModelPackagingJobs"]) == 1
    with pytest.raises(ConflictException, match="already used with different parameters"):
        _start(queue_only, ClientToken="token-1", Description="different")
    # After the 8-hour window the token is free again.
    with queue_only.db.transaction() as conn:
        conn.execute("UPDATE client_tokens SET created = created - 8 * 3600 - 1")
    with pytest.raises(ConflictException, match="already exists"):  # same component version, so a new job conflicts
        _start(queue_only, ClientToken="token-1")


CRASHING_CALL = """
import os, sys
from pathlib import Path
from compiler.jobs.operations import PackagingJobs
from tests.conftest import make_service
from tests.compiler.test_jobs import _configuration

real = PackagingJobs.start_model_packaging_job
def crash_after_commit(self, **params):
    self.workers.ensure_worker = lambda: os._exit(9)  # the job's transaction has committed by then
    return real(self, **params)
def crash_before_commit(self, **params):
    os._exit(9)
PackagingJobs.start_model_packaging_job = {when}
service = make_service(Path(sys.argv[1]), max_workers=0, max_queued_jobs=1000)
request = {{"ProjectName": "p", "ModelVersion": "latest", "Configuration": _configuration(), "ClientToken": "t-1"}}
service.call("StartModelPackagingJob", request)
"""


@pytest.mark.parametrize("when", ["crash_after_commit", "crash_before_commit"])
def test_a_client_token_is_not_stuck_when_the_process_dies(queue_only, classifier_file, when: str) -> None:
    """Killed after the job committed: the retry gets that job. Killed before: the retry runs the request."""
    _project_with_model(queue_only, classifier_file)
    died = subprocess.run(
        [sys.executable, "-c", CRASHING_CALL.format(when=when), str(queue_only.settings.data_dir)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert died.returncode == 9, died.stderr
    jobs_before = queue_only.call("ListModelPackagingJobs", {"ProjectName": "p"})["ModelPackagingJobs"]
    retried = _start(queue_only, ClientToken="t-1")
    jobs = queue_only.call("ListModelPackagingJobs", {"ProjectName": "p"})["ModelPackagingJobs"]
    assert [j["JobName"] for j in jobs] == [retried]
    assert len(jobs_before) == (1 if when == "crash_after_commit" else 0)


def test_conflicts_on_job_name_and_component_version(queue_only, classifier_file) -> None:
    _project_with_model(queue_only, classifier_file)
    _start(queue_only, JobName="job-a")
    with pytest.raises(ConflictException) as error:
        queue_only.call(
            "StartModelPackagingJob",
            {"ProjectName": "p", "ModelVersion": "1", "JobName": "job-a", "Configuration": _configuration("2.0.0")},
        )
    assert error.value.fields["ResourceType"] == "MODEL_PACKAGE_JOB"
    with pytest.raises(ConflictException, match=r"com.example.Boards version 1.0.0 already exists"):
        _start(queue_only, JobName="job-b")
    _start(queue_only, JobName="job-c", Configuration=_configuration("1.0.1"))


def test_unknown_project_and_version(queue_only, classifier_file) -> None:
    with pytest.raises(ResourceNotFoundException) as error:
        _start(queue_only)
    assert error.value.fields["ResourceType"] == "PROJECT"
    _project_with_model(queue_only, classifier_file)
    with pytest.raises(ResourceNotFoundException) as error:
        _start(queue_only, ModelVersion="7")
    assert error.value.fields == {"ResourceId": "p/7", "ResourceType": "MODEL"}
    with pytest.raises(ResourceNotFoundException, match="Model packaging job 'nope'"):
        queue_only.call("DescribeModelPackagingJob", {"ProjectName": "p", "JobName": "nope"})


def test_a_full_queue_throttles_with_a_retry_time(tmp_path, classifier_file) -> None:
    service = make_service(tmp_path / "data", max_workers=0, max_queued_jobs=2)
    _project_with_model(service, classifier_file)
    _start(service, Configuration=_configuration("1.0.0"))
    _start(service, Configuration=_configuration("1.0.1"))
    with pytest.raises(ThrottlingException) as error:
        _start(service, Configuration=_configuration("1.0.2"))
    assert error.value.fields == {
        "QuotaCode": "model-packaging-jobs-in-progress",
        "ServiceCode": "lookoutvision",
        "RetryAfterSeconds": 60,
    }
    assert service.db.query("SELECT COUNT(*) FROM components")[0][0] == 2  # the refused job reserved nothing


def test_pagination_stays_correct_while_jobs_are_added(queue_only, classifier_file) -> None:
    _project_with_model(queue_only, classifier_file)
    original = [_start(queue_only, JobName=f"job-{i}", Configuration=_configuration(f"1.0.{i}")) for i in range(7)]
    seen: list[str] = []
    token = None
    added = 0
    stop = threading.Event()

    def insert_concurrently() -> None:
        nonlocal added
        while not stop.is_set() and added < 300:  # stay under the queue quota however slow paging is
            _start(queue_only, JobName=f"new-{added}", Configuration=_configuration(f"2.0.{added}"))
            added += 1

    inserter = threading.Thread(target=insert_concurrently)
    inserter.start()
    try:
        while True:
            page = queue_only.call(
                "ListModelPackagingJobs",
                {"ProjectName": "p", "MaxResults": 2, **({"NextToken": token} if token else {})},
            )
            check_response("ListModelPackagingJobs", page)
            seen += [j["JobName"] for j in page["ModelPackagingJobs"]]
            time.sleep(0.05)
            token = page.get("NextToken")
            if not token:
                break
    finally:
        stop.set()
        inserter.join()
    assert added > 0
    older = [name for name in seen if name.startswith("job-")]
    assert older == list(reversed(original))  # newest first, each exactly once
    assert len(seen) == len(set(seen))


def test_foreign_next_token_is_refused(queue_only, classifier_file) -> None:
    from compiler.api.errors import ValidationException
    from compiler.api.pagination import encode_token

    _project_with_model(queue_only, classifier_file)
    with pytest.raises(ValidationException, match="Invalid NextToken"):
        queue_only.call("ListModelPackagingJobs", {"ProjectName": "p", "NextToken": encode_token("projects", 3)})


def test_queued_job_is_resumed_by_the_next_service_start(tmp_path, classifier_file) -> None:
    queued = make_service(tmp_path / "data", max_workers=0)
    _project_with_model(queued, classifier_file)
    job = _start(queued)
    service = make_service(tmp_path / "data", max_workers=1)  # a restart with a worker slot
    try:
        description = wait_for_job(service, "p", job)
    finally:
        stop_workers(service)
    assert description["Status"] == "SUCCEEDED"
    # No tuning record covers this model's kernels: the final status says every one got a search-free schedule.
    message = description["StatusMessage"]
    kernels = regex.search(r"tuned kernels applied: 0 of (\d+); search-free schedules: (\d+)\.", message)
    assert "Schedules: search-free schedules" in message and kernels, message
    assert kernels.group(1) == kernels.group(2) and "default (untuned)" not in message, message
    steps = [step.status for step in service.jobs.job_steps("p", job)]
    assert steps[0] == "CREATED" and steps[-1] == "SUCCEEDED" and steps.count("RUNNING") >= 8, steps


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed worker stays one until its parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_job_whose_worker_died_is_failed_with_an_explanation(service, classifier_file) -> None:
    _project_with_model(service, classifier_file)
    job = _start(service)
    deadline = time.time() + 60
    pid = None
    while time.time() < deadline and pid is None:
        row = service.db.query("SELECT status, worker_pid FROM jobs WHERE name = ?", (job,))[0]
        pid = row["worker_pid"] if row["status"] == "RUNNING" else None
        time.sleep(0.02)
    assert pid, "the worker never claimed the job"
    os.kill(pid, signal.SIGKILL)
    while _running(pid) and time.time() < deadline:
        time.sleep(0.05)
    restarted = make_service(service.settings.data_dir)
    description = restarted.call("DescribeModelPackagingJob", {"ProjectName": "p", "JobName": job})
    description = description["ModelPackagingDescription"]
    assert description["Status"] == "FAILED"
    assert f"worker (pid {pid}) stopped while the job was running" in description["StatusMessage"]
    # Its scratch folders (the real one, if it got that far, and one more as a stand-in) go when a worker starts.
    work = restarted.settings.data_dir / "work"
    (work / f"tune-pid{pid}-stale").mkdir(parents=True, exist_ok=True)
    # The reservation is released: the same component version can be packaged again.
    assert wait_for_job(restarted, "p", _start(restarted))["Status"] == "SUCCEEDED"
    stop_workers(restarted)
    assert not [f.name for f in work.iterdir() if f"pid{pid}-" in f.name]


def test_describe_and_list_do_not_write_when_no_worker_died(queue_only, classifier_file, monkeypatch) -> None:
    _project_with_model(queue_only, classifier_file)
    job = _start(queue_only)

    def no_writes():
        raise AssertionError("a read-only call opened a write transaction")

    monkeypatch.setattr(queue_only.db, "transaction", no_writes)
    description = queue_only.call("DescribeModelPackagingJob", {"ProjectName": "p", "JobName": job})
    assert description["ModelPackagingDescription"]["Status"] == "CREATED"
    listed = queue_only.call("ListModelPackagingJobs", {"ProjectName": "p"})["ModelPackagingJobs"]
    assert [j["JobName"] for j in listed] == [job]


def test_the_plan_is_parsed_once_at_the_call_and_stored_with_the_job(queue_only, classifier_file, monkeypatch) -> None:
    from compiler.build import targets
    from compiler.jobs.plan import PackagingPlan

    parsed = []
    original = targets.parse_compiler_options
    monkeypatch.setattr("compiler.jobs.plan.parse_compiler_options", lambda text: parsed.append(text) or original(text))
    _project_with_model(queue_only, classifier_file)
    configuration = _configuration()
    configuration["Greengrass"]["CompilerOptions"] = '{"mcpu": "znver3", "tuning-trials": 64}'
    job = _start(queue_only, Configuration=configuration)
    assert len(parsed) == 1
    row = queue_only.db.query("SELECT plan FROM jobs WHERE name = ?", (job,))[0]
    plan = PackagingPlan.from_json(row["plan"])
    assert (plan.target.mcpu, plan.tuning.trials, plan.bucket) == ("znver3", 64, "my-bucket")
    assert PackagingPlan.from_json(plan.to_json()) == plan


def test_tvm_failures_are_the_models_and_failures_in_our_code_are_ours() -> None:
    """The pipeline reports the first as "TVM could not compile the model" and lets the second reach the
    worker, which fails the job as an internal error with the traceback in its log."""
    import tvm
    from onnx import TensorProto, helper
    from tvm.relax.frontend.onnx import from_onnx

    from compiler.build.targets import TargetSpec
    from compiler.jobs.failures import raised_by_tvm

    def caught(action) -> BaseException:
        try:
            action()
        except Exception as exc:
            return exc
        raise AssertionError("nothing was raised")

    graph = helper.make_graph(
        [helper.make_node("Celu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    unconvertible = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert raised_by_tvm(caught(lambda: tvm.target.Target("no-such-kind")))  # from TVM's C++
    assert raised_by_tvm(caught(lambda: from_onnx(unconvertible)))
    assert not raised_by_tvm(caught(lambda: TargetSpec(arch="riscv64", accelerator=None).llvm_triple))
