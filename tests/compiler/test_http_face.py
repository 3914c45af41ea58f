"""`lookout-edge serve` driven by the real boto3 (current release, with the model `lookout-edge service-model`
writes on AWS_DATA_PATH), over loopback HTTP: every operation, the paginators, each modeled error as its own
exception class, SigV4 checks, limits and a graceful stop that keeps queued jobs."""

from __future__ import annotations

import configparser
import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import onnx
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from compiler.api.api_model import OPERATIONS
from compiler.api.service_model import service_model, write_service_model
from tests.loopback import asgi_server, free_port, wait_until_listening
from tests.models import classifier

REGION = "us-east-1"
KEY, SECRET = "AKIDLOOKOUTEDGETEST", "test-secret-key"
CONFIGURATION = {
    "Greengrass": {
        "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
        "S3OutputLocation": {"Bucket": "my-bucket", "Prefix": "models/"},
        "ComponentName": "com.example.Http",
    }
}


@contextmanager
def serving(data_dir: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A `lookout-edge serve` process on a free loopback port, queueing jobs without running them; its output
    (the access log) goes to `serve.log` beside `data_dir`."""
    port = free_port()
    env = {**os.environ, "LOOKOUT_EDGE_MAX_WORKERS": "0", "LOOKOUT_EDGE_MAX_QUEUED_JOBS": "3"}
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir.parent / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            ["lookout-edge", "--data-dir", str(data_dir), "serve", "--port", str(port), *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aws-data")
    write_service_model(path)
    return path


def _client(data_path: Path, url: str, secret: str = SECRET, **config):
    previous = os.environ.get("AWS_DATA_PATH")
    os.environ["AWS_DATA_PATH"] = str(data_path)
    try:
        session = boto3.session.Session(aws_access_key_id=KEY, aws_secret_access_key=secret, region_name=REGION)
        retries = {"mode": "standard", "total_max_attempts": 1}  # a throttled call is answered, not retried
        return session.client("lookoutvision", endpoint_url=url, config=Config(retries=retries, **config))
    finally:
        if previous is None:
            del os.environ["AWS_DATA_PATH"]
        else:
            os.environ["AWS_DATA_PATH"] = previous


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("serve")) as (url, process):
        yield url, process


def test_every_operation_through_boto3(server, data_path, tmp_path) -> None:
    url, _ = server
    client = _client(data_path, url)
    model_file = tmp_path / "classifier.onnx"
    onnx.save(classifier(), model_file)
    project = client.create_project(ProjectName="boards")["ProjectMetadata"]
    assert project["ProjectArn"].endswith(":project/boards") and project["CreationTimestamp"].year >= 2026
    assert client.describe_project(ProjectName="boards")["ProjectDescription"]["ProjectName"] == "boards"
    assert "boards" in [p["ProjectName"] for p in client.list_projects()["Projects"]]
    created = client.create_model(ProjectName="boards", ModelFile=str(model_file))
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202 and created["ModelMetadata"]["ModelVersion"] == "1"
    assert client.describe_model(ProjectName="boards", ModelVersion="1")["ModelDescription"]["Status"] == "TRAINED"
    assert [m["ModelVersion"] for m in client.list_models(ProjectName="boards")["Models"]] == ["1"]
    names = []
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        configuration = {"Greengrass": {**CONFIGURATION["Greengrass"], "ComponentVersion": version}}
        job = client.start_model_packaging_job(ProjectName="boards", ModelVersion="1", Configuration=configuration)
        names.append(job["JobName"])
    described = client.describe_model_packaging_job(ProjectName="boards", JobName=names[0])
    description = described["ModelPackagingDescription"]
    assert description["Status"] == "CREATED" and description["ModelPackagingConfiguration"] == {
        "Greengrass": {**CONFIGURATION["Greengrass"], "ComponentVersion": "1.0.0"}
    }
    pages = client.get_paginator("list_model_packaging_jobs").paginate(
        ProjectName="boards", PaginationConfig={"PageSize": 1}
    )
    listed = [job["JobName"] for page in pages for job in page["ModelPackagingJobs"]]
    assert sorted(listed) == sorted(names) and len(listed) == 3  # three pages of one, nothing lost or repeated
    client.create_model(ProjectName="boards", ModelFile=str(model_file))
    assert client.delete_model(ProjectName="boards", ModelVersion="2")["ResponseMetadata"]["HTTPStatusCode"] == 202
    client.create_project(ProjectName="empty")
    assert client.delete_project(ProjectName="empty")["ProjectArn"].endswith(":project/empty")


def test_each_modeled_error_is_its_own_exception_class(server, data_path, tmp_path) -> None:
    url, _ = server
    client = _client(data_path, url)
    client.create_project(ProjectName="errors")
    with pytest.raises(client.exceptions.ConflictException) as conflict:
        client.create_project(ProjectName="errors")
    assert (conflict.value.response["ResourceId"], conflict.value.response["ResourceType"]) == ("errors", "PROJECT")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        client.describe_model_packaging_job(ProjectName="errors", JobName="nope")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(client.exceptions.ValidationException, match="failed to satisfy constraint"):
        client.create_project(ProjectName="x" * 300)  # botocore checks no maximum length: the service does
    model_file = tmp_path / "classifier.onnx"
    onnx.save(classifier(), model_file)
    client.create_model(ProjectName="errors", ModelFile=str(model_file))
    with pytest.raises(client.exceptions.ThrottlingException) as throttled:
        for version in range(4):  # the server queues at most 3 jobs (the other test may hold some)
            configuration = {"Greengrass": {**CONFIGURATION["Greengrass"], "ComponentName": f"com.example.E{version}"}}
            client.start_model_packaging_job(ProjectName="errors", ModelVersion="1", Configuration=configuration)
    response = throttled.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "60"


def test_signatures_are_checked_when_credentials_are_configured(data_path, tmp_path) -> None:
    credentials = tmp_path / "credentials"
    profile = configparser.ConfigParser()
    profile["factory"] = {"aws_access_key_id": KEY, "aws_secret_access_key": SECRET}
    with credentials.open("w") as out:
        profile.write(out)
    with serving(tmp_path / "data", "--credentials", str(credentials)) as (url, _):
        assert _client(data_path, url).list_projects()["Projects"] == []
        for client in (
            _client(data_path, url, secret="not-the-secret"),
            _client(data_path, url, signature_version=UNSIGNED),
        ):
            with pytest.raises(client.exceptions.AccessDeniedException, match="signature is not valid"):
                client.list_projects()


def test_the_aws_cli_works_unchanged(server, data_path) -> None:
    url, _ = server
    env = {**os.environ, "AWS_DATA_PATH": str(data_path), "AWS_ACCESS_KEY_ID": KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION}  # fmt: skip
    aws = [sys.executable, "-m", "awscli", "lookoutvision", "--endpoint-url", url, "--output", "json"]
    created = subprocess.run([*aws, "create-project", "--project-name", "cli"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["ProjectMetadata"]["ProjectName"] == "cli"
    missing = subprocess.run([*aws, "describe-project", "--project-name", "absent"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    # the aws CLI v1 exits 255 on a service error (v2: 254)
    assert missing.returncode in (254, 255) and "(ResourceNotFoundException)" in missing.stderr


def _self_signed_certificate(key: Path, cert: Path) -> None:
    """A one-day certificate for 127.0.0.1 and its key, as PEM files (the cryptography package, no openssl CLI)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def test_https_with_a_given_certificate(data_path, tmp_path, monkeypatch) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    _self_signed_certificate(key, cert)
    with serving(tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key)) as (url, _):
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))  # the client trusts exactly this certificate
        assert _client(data_path, url.replace("http://", "https://")).list_projects()["Projects"] == []


def test_a_public_address_needs_credentials(tmp_path) -> None:
    done = subprocess.run(
        ["lookout-edge", "--data-dir", str(tmp_path), "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 252 and "give --credentials" in done.stderr


def test_oversized_and_malformed_requests_are_refused(server) -> None:
    url, _ = server
    big = b"{" + b" " * (2 << 20) + b"}"
    cases = [
        (big, {}, "at most 1048576"),  # declared too large
        (iter([big[i : i + 65536] for i in range(0, len(big), 65536)]), {"encode_chunked": True}, "at most 1048576"),
        (b"[1, 2]", {}, "must be a JSON object"),
    ]
    for body, how, words in cases:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/2020-11-20/projects", body=body, headers=headers, **how)
        response = connection.getresponse()
        assert response.status == 400 and response.getheader("x-amzn-ErrorType") == "ValidationException"
        assert words in response.read().decode()
        connection.close()


def test_sigterm_stops_gracefully_and_queued_jobs_survive(data_path, tmp_path) -> None:
    model_file = tmp_path / "classifier.onnx"
    onnx.save(classifier(), model_file)
    with serving(tmp_path / "data") as (url, process):
        client = _client(data_path, url)
        client.create_project(ProjectName="kept")
        client.create_model(ProjectName="kept", ModelFile=str(model_file))
        job = client.start_model_packaging_job(ProjectName="kept", ModelVersion="1", Configuration=CONFIGURATION)
        process.send_signal(signal.SIGTERM)
        # uvicorn finishes the requests in flight and shuts down, then re-raises the signal (so exit status -15)
        assert process.wait(30) == -signal.SIGTERM
        assert "Finished server process" in (tmp_path / "serve.log").read_text()
    with serving(tmp_path / "data") as (url, _):
        described = _client(data_path, url).describe_model_packaging_job(ProjectName="kept", JobName=job["JobName"])
        assert described["ModelPackagingDescription"]["Status"] == "CREATED"


def test_the_packaging_operations_bind_as_lookout_for_visions_did() -> None:
    """The REST binding of specs/lookout-for-vision-edge.md §2.1/2.2, as botocore's lookoutvision model had it."""
    model = service_model()
    operations, shapes = model["operations"], model["shapes"]
    assert model["metadata"]["protocol"] == "rest-json" and model["metadata"]["signingName"] == "lookoutvision"
    assert operations["StartModelPackagingJob"]["http"] == {
        "method": "POST",
        "requestUri": "/2020-11-20/projects/{projectName}/modelpackagingjobs",
    }
    assert operations["DescribeModelPackagingJob"]["http"]["requestUri"].endswith("modelpackagingjobs/{jobName}")
    start = shapes["StartModelPackagingJobRequest"]
    assert start["required"] == ["ProjectName", "ModelVersion", "Configuration"]
    assert start["members"]["ClientToken"] == {
        "shape": "ClientToken",
        "location": "header",
        "locationName": "X-Amzn-Client-Token",
        "idempotencyToken": True,
    }
    assert start["members"]["ProjectName"]["location"] == "uri"
    listing = shapes["ListModelPackagingJobsRequest"]["members"]
    assert (listing["MaxResults"]["locationName"], listing["NextToken"]["locationName"]) == ("maxResults", "nextToken")
    assert shapes["GreengrassConfiguration"]["required"] == ["S3OutputLocation", "ComponentName"]
    assert shapes["ComponentVersion"]["pattern"] == r"^([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,6})$"
    assert shapes["PageSize"] == {"type": "integer", "min": 1, "max": 100}
    assert shapes["ConflictException"]["required"] == ["Message", "ResourceId", "ResourceType"]
    assert shapes["ThrottlingException"]["members"]["RetryAfterSeconds"]["locationName"] == "Retry-After"
    assert set(operations) == {name for name, spec in OPERATIONS.items() if "http" in spec}


# Where our CreateModel differs from AWS's on purpose: AWS trained a model from a dataset into OutputConfig; ours
# imports an ONNX file (ModelFile, with its type and metadata).
CREATE_MODEL_DIFFERENCES = {
    "required OutputConfig",
    "required ModelFile",
    "lacks KmsKeyId",
    "lacks OutputConfig",
    "lacks Tags",
    "adds ModelFile",
    "adds ModelType",
    "adds ModelMetadata",
}
CONSTRAINTS = ("type", "min", "max", "pattern", "enum")


def _shape_differences(reference: dict, ours: dict, theirs: str, mine: str, path: str) -> list[str]:
    """How our shape `mine` differs from botocore's `theirs`, members followed as far as both have them."""
    want, have = reference["shapes"][theirs], ours["shapes"][mine]
    found = [f"{path} {k}: {want.get(k)!r} ≠ {have.get(k)!r}" for k in CONSTRAINTS if want.get(k) != have.get(k)]
    if sorted(want.get("required", [])) != sorted(have.get("required", [])):
        found.append(f"{path} required: {want.get('required')} ≠ {have.get('required')}")
    for member, shape in want.get("members", {}).items():
        if member in have.get("members", {}):
            found += _shape_differences(reference, ours, shape, have["members"][member]["shape"], f"{path}.{member}")
    if "member" in want:
        found += _shape_differences(reference, ours, want["member"], have["member"]["shape"], f"{path}[]")
    return found


def test_the_generated_model_matches_the_one_botocore_shipped() -> None:
    """tests/data/botocore-1.35-lookoutvision.json is extracted from botocore 1.35.99, the last line that shipped
    lookoutvision (scripts/botocore-reference.py): same operations, HTTP bindings, members and their locations,
    requiredness and constraints for everything we implement."""
    reference = json.loads((Path(__file__).parent.parent / "data" / "botocore-1.35-lookoutvision.json").read_text())
    ours = service_model()
    assert ours["metadata"] | reference["metadata"] == ours["metadata"]
    assert set(reference["operations"]) == set(ours["operations"])
    create_model: set[str] = set()
    problems: set[str] = set()
    for name, want in reference["operations"].items():
        noted = create_model if name == "CreateModel" else problems
        assert ours["operations"][name]["http"] == want["http"], name
        request = ours["shapes"][f"{name}Request"]
        noted.update(f"required {m}" for m in set(want["required"]) ^ set(request["required"]))
        noted.update(f"lacks {m}" for m in set(want["input"]) - set(request["members"]))
        noted.update(f"adds {m}" for m in set(request["members"]) - set(want["input"]))
        for member, binding in want["input"].items():
            if member in request["members"]:
                have = request["members"][member]
                for key in ("location", "locationName", "idempotencyToken"):
                    if binding.get(key) != have.get(key):
                        problems.add(f"{name}.{member} {key}: {binding.get(key)} ≠ {have.get(key)}")
                problems.update(
                    _shape_differences(reference, ours, binding["shape"], have["shape"], f"{name}.{member}")
                )
    assert problems == set() and create_model == CREATE_MODEL_DIFFERENCES


class _FailingService:
    """Answers every call with the error it is told to raise: each of the service's errors in turn."""

    error: Exception = RuntimeError("a defect of ours")

    def call(self, operation: str, params: dict) -> dict:
        raise self.error


def test_every_modeled_error_reaches_boto3_as_its_own_class(data_path) -> None:
    """Each error of errors.ERRORS (and a defect, as InternalServerException) through the real HTTP stack."""
    from compiler.api.errors import ERRORS, ServiceError
    from compiler.api.http_server import build_app

    service = _FailingService()
    with asgi_server(build_app(service)) as url:
        client = _client(data_path, url)
        members = {"ResourceId": "boards", "ResourceType": "PROJECT", "QuotaCode": "q", "ServiceCode": "lookoutvision",
                   "RetryAfterSeconds": 7}  # fmt: skip
        for error in ERRORS:
            fields = {member: members[member] for member in error.members}
            service.error = error.__new__(error)  # each class's own signature aside: message and members
            ServiceError.__init__(service.error, f"raised {error.code}", **fields)
            with pytest.raises(getattr(client.exceptions, error.code)) as raised:
                client.describe_project(ProjectName="boards")
            response = raised.value.response
            assert response["Error"]["Message"] == f"raised {error.code}"
            assert response["ResponseMetadata"]["HTTPStatusCode"] == error.http_status
            for member, value in fields.items():
                assert response.get(member) == value or response["ResponseMetadata"]["HTTPHeaders"].get(
                    "retry-after"
                ) == str(value), (error.code, member)
        service.error = RuntimeError("a defect of ours")
        with pytest.raises(client.exceptions.InternalServerException, match="The service failed; see its log"):
            client.describe_project(ProjectName="boards")
