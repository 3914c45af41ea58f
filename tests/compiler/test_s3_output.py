"""Artifacts in S3 (LOOKOUT_EDGE_OUTPUT=s3) against moto's S3-compatible server on loopback, with boto3 and the
standard AWS environment: a real job publishes its bundle and recipe there with s3:// URIs, export-component reads
them back, multipart uploads round-trip, and a bucket in another region or missing is refused at the request."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import boto3
import pytest

from compiler.api.errors import ValidationException
from compiler.greengrass.s3_store import MULTIPART_BYTES, S3Store
from tests.conftest import X86_CONFIGURATION, make_service, stop_workers, wait_for_job
from tests.loopback import moto_s3_server

REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """The standard AWS environment pointed at the loopback server; the client the tests inspect S3 with."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "LOOKOUT_EDGE_OUTPUT": "s3",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", region_name=REGION)
    for bucket in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    client.create_bucket(Bucket="my-bucket")
    client.create_bucket(Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client


def test_a_job_publishes_to_s3_and_export_reads_it_back(s3, tmp_path, classifier_file) -> None:
    service = make_service(tmp_path / "data", output="s3")
    try:
        service.call("CreateProject", {"ProjectName": "p"})
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(classifier_file)})
        job = service.call("StartModelPackagingJob", {"ProjectName": "p", "ModelVersion": "1",
                                                      "Configuration": X86_CONFIGURATION})["JobName"]  # fmt: skip
        description = wait_for_job(service, "p", job)
    finally:
        stop_workers(service)
    assert description["Status"] == "SUCCEEDED", description["StatusMessage"]
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="my-bucket")["Contents"])
    prefix = "models/com.example.CircuitBoards/1.0.0/"
    assert f"{prefix}model.zip" in keys and any(k.endswith(".json") for k in keys), keys
    recipe_key = next(k for k in keys if k.endswith(".json"))
    recipe = json.loads(s3.get_object(Bucket="my-bucket", Key=recipe_key)["Body"].read())
    artifact = recipe["Manifests"][0]["Artifacts"][0]
    assert artifact["URI"] == f"s3://my-bucket/{prefix}model.zip"
    stored = s3.get_object(Bucket="my-bucket", Key=f"{prefix}model.zip")["Body"].read()
    assert artifact["Digest"] == base64.b64encode(hashlib.sha256(stored).digest()).decode()
    exported = service.call(
        "ExportComponent",
        {"ComponentName": "com.example.CircuitBoards", "ComponentVersion": "1.0.0", "Output": str(tmp_path / "gg")},
    )
    (archive,) = [path for path in exported["ArtifactFiles"] if path.endswith("model.zip")]
    assert open(archive, "rb").read() == stored  # noqa: SIM115


def test_multipart_uploads_round_trip(s3, tmp_path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(MULTIPART_BYTES + (3 << 20)))  # two parts
    store = S3Store(REGION)
    assert store.put_file("my-bucket", "big/big.bin", source) == "s3://my-bucket/big/big.bin"
    copy = store.get_file("my-bucket", "big/big.bin", tmp_path / "copy.bin")
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


@pytest.mark.parametrize(
    ("bucket", "words"),
    [("eu-bucket", "is in eu-west-1; the output bucket must be in this service's region, us-east-1"),
     ("no-such-bucket", "NoSuchBucket")],
)  # fmt: skip
def test_a_bucket_in_another_region_or_missing_is_refused_at_the_request(s3, tmp_path, classifier_file, bucket, words):
    service = make_service(tmp_path / "data", output="s3", max_workers=0)
    service.call("CreateProject", {"ProjectName": "p"})
    service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(classifier_file)})
    configuration = {"Greengrass": {**X86_CONFIGURATION["Greengrass"], "S3OutputLocation": {"Bucket": bucket}}}
    with pytest.raises(ValidationException, match=words):
        service.call(
            "StartModelPackagingJob", {"ProjectName": "p", "ModelVersion": "1", "Configuration": configuration}
        )
    assert service.call("ListModelPackagingJobs", {"ProjectName": "p"})["ModelPackagingJobs"] == []
