"""Packaged components registered with Greengrass V2 (LOOKOUT_EDGE_GREENGRASS=cloud) through boto3, against the
stand-in cloud API on loopback (tests/greengrass_cloud_standin.py): the inline recipe and tags arrive, the job waits
for DEPLOYABLE and reports the ARN Greengrass returned; Greengrass's ConflictException and a version it cannot make
deployable fail the job, saying why."""

from __future__ import annotations

import os

import boto3
import pytest

from compiler.api.errors import ValidationException
from compiler.greengrass.agent_component import AGENT_COMPONENT_NAME, agent_recipe
from compiler.greengrass.cloud_registration import publish_component
from compiler.greengrass.recipe import artifact_digest
from tests.conftest import X86_CONFIGURATION, make_service, stop_workers, wait_for_job
from tests.greengrass_cloud_standin import GreengrassCloudStandin
from tests.loopback import moto_s3_server

REGION, ACCOUNT = "us-east-1", "000000000000"
COMPONENT = X86_CONFIGURATION["Greengrass"]["ComponentName"]


@pytest.fixture
def cloud(monkeypatch):
    with GreengrassCloudStandin(REGION, ACCOUNT) as standin:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_GREENGRASSV2": standin.endpoint,
        }.items():
            monkeypatch.setenv(name, value)
        yield standin


def _configuration(version: str, **changes) -> dict:
    return {"Greengrass": {**X86_CONFIGURATION["Greengrass"], "ComponentVersion": version, **changes}}


@pytest.mark.slow  # three real packaging jobs
def test_jobs_register_their_components_with_greengrass(cloud, tmp_path, classifier_file) -> None:
    taken = cloud.arn(COMPONENT, "2.0.0")
    cloud.components[taken] = {"recipe": {}, "tags": {}, "state": "DEPLOYABLE", "errors": {}}  # made elsewhere
    service = make_service(tmp_path / "data", greengrass="cloud", max_workers=2)
    requests = {
        "registered": _configuration("1.0.0", Tags=[{"Key": "line", "Value": "3"}]),
        "conflict": _configuration("2.0.0"),
        "unreachable": _configuration("3.0.0", S3OutputLocation={"Bucket": "unreachable-bucket"}),
    }
    try:
        service.call("CreateProject", {"ProjectName": "p"})
        service.call("CreateModel", {"ProjectName": "p", "ModelFile": str(classifier_file)})
        jobs = {
            case: service.call(
                "StartModelPackagingJob", {"ProjectName": "p", "ModelVersion": "1", "Configuration": configuration}
            )["JobName"]
            for case, configuration in requests.items()
        }
        described = {case: wait_for_job(service, "p", job) for case, job in jobs.items()}
    finally:
        stop_workers(service)
    registered = described["registered"]
    assert registered["Status"] == "SUCCEEDED", registered["StatusMessage"]
    arn = cloud.arn(COMPONENT, "1.0.0")
    assert registered["ModelPackagingOutputDetails"]["Greengrass"]["ComponentVersionArn"] == arn
    assert cloud.components[arn]["state"] == "DEPLOYABLE" and cloud.components[arn]["tags"] == {"line": "3"}
    recipe = cloud.components[arn]["recipe"]
    assert (recipe["ComponentName"], recipe["ComponentVersion"]) == (COMPONENT, "1.0.0")
    assert described["conflict"]["Status"] == "FAILED"
    assert (
        "Greengrass already has component com.example.CircuitBoards version 2.0.0 (ConflictException"
        in (described["conflict"]["StatusMessage"])
    )
    assert described["unreachable"]["Status"] == "FAILED"
    assert "could not make com.example.CircuitBoards 3.0.0 deployable" in described["unreachable"]["StatusMessage"]
    assert "Access denied to the artifact" in described["unreachable"]["StatusMessage"]


def test_the_agent_component_is_published_to_s3_and_registered(cloud, tmp_path, monkeypatch) -> None:
    """`build-agent-component --publish` after the build: each wheelhouse to its s3:// URI, then the recipe."""
    with moto_s3_server() as s3_endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="fleet-bucket")
        s3.create_bucket(Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        archives = {}
        for arch in ("aarch64", "x86_64"):
            archives[arch] = tmp_path / f"wheelhouse-{arch}.zip"
            archives[arch].write_bytes(os.urandom(4096))
        folder = f"s3://fleet-bucket/lookout-edge/{AGENT_COMPONENT_NAME}/1.2.0"
        uris = {arch: f"{folder}/{path.name}" for arch, path in archives.items()}
        recipe = agent_recipe("1.2.0", "3.10", [(a, uris[a], artifact_digest(archives[a])) for a in archives])
        with pytest.raises(ValidationException, match="is in eu-west-1"):
            publish_component(recipe, [(archives["x86_64"], "s3://eu-bucket/w.zip")], REGION, lambda _: None)
        assert cloud.components == {}  # nothing registered when an artifact cannot go where the recipe says
        arn = publish_component(recipe, [(archives[a], uris[a]) for a in archives], REGION, lambda _: None)
        assert arn == cloud.arn(AGENT_COMPONENT_NAME, "1.2.0") and cloud.components[arn]["state"] == "DEPLOYABLE"
        for arch, path in archives.items():
            key = uris[arch].removeprefix("s3://fleet-bucket/")
            assert s3.get_object(Bucket="fleet-bucket", Key=key)["Body"].read() == path.read_bytes()
