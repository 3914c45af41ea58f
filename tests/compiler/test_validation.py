"""Every constraint of the packaging request, just inside and just outside (table-driven)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from compiler.api.errors import ValidationException
from compiler.api.validation import check_request, check_value
from tests.conftest import X86_CONFIGURATION

BASE = {"ProjectName": "circuit-boards", "ModelVersion": "1", "Configuration": X86_CONFIGURATION}
GG = ("Configuration", "Greengrass")
TAG = ("Configuration", "Greengrass", "Tags", 0)

# (path into the request, value just inside the rule, value just outside, words the error must contain)
CASES: list[tuple[tuple, Any, Any, str]] = [
    (("ProjectName",), "a" * 255, "a" * 256, "length less than or equal to 255"),
    (("ProjectName",), "a", "", "length greater than or equal to 1"),
    (("ProjectName",), "a-b_c9", "-abc", "regular expression pattern"),
    (("ProjectName",), "9abc", "ab.c", "regular expression pattern"),
    (("ModelVersion",), "1", "0", "regular expression pattern"),
    (("ModelVersion",), "latest", "Latest", "regular expression pattern"),
    (("ModelVersion",), "9" * 10, "9" * 11, "length less than or equal to 10"),
    (("JobName",), "a" * 64, "a" * 65, "length less than or equal to 64"),
    (("JobName",), "job-1", "job_1", "regular expression pattern"),
    (("JobName",), "j", "", "length greater than or equal to 1"),
    (("Description",), "x" * 256, "x" * 257, "length less than or equal to 256"),
    (("Description",), "Line 3 (night shift): v1.0, ok?", "semi;colon!", "regular expression pattern"),
    (("ClientToken",), "a" * 64, "a" * 65, "length less than or equal to 64"),
    (("ClientToken",), "abc-123", "abc_123", "regular expression pattern"),
    ((*GG, "CompilerOptions"), "{ }", "{}", "length greater than or equal to 3"),
    ((*GG, "CompilerOptions"), "{" + " " * 1022 + "}", "{" + " " * 1023 + "}", "length less than or equal to 1024"),
    ((*GG, "ComponentName"), "c" * 128, "c" * 129, "length less than or equal to 128"),
    ((*GG, "ComponentName"), "com.example-x_1", "com/example", "regular expression pattern"),
    ((*GG, "ComponentVersion"), "999999.0.0", "1000000.0.0", "regular expression pattern"),
    ((*GG, "ComponentVersion"), "1.0.0", "1.0", "regular expression pattern"),
    ((*GG, "ComponentDescription"), "d" * 256, "d" * 257, "length less than or equal to 256"),
    ((*GG, "ComponentDescription"), "d", "", "length greater than or equal to 1"),
    ((*GG, "TargetPlatform", "Os"), "LINUX", "WINDOWS", "enum value set: [LINUX]"),
    ((*GG, "TargetPlatform", "Arch"), "X86_64", "ARM_64", "enum value set: [ARM64, X86_64]"),
    ((*GG, "TargetPlatform", "Accelerator"), None, "CPU", "enum value set: [NVIDIA]"),
    ((*GG, "S3OutputLocation", "Bucket"), "abc", "ab", "length greater than or equal to 3"),
    ((*GG, "S3OutputLocation", "Bucket"), "b" * 63, "b" * 64, "length less than or equal to 63"),
    ((*GG, "S3OutputLocation", "Bucket"), "my.bucket-1_x", "my bucket", "regular expression pattern"),
    ((*GG, "S3OutputLocation", "Prefix"), "", "/models", "regular expression pattern"),
    ((*GG, "S3OutputLocation", "Prefix"), "p" * 1024, "p" * 1025, "length less than or equal to 1024"),
    (
        (*GG, "Tags"),
        [{"Key": "k", "Value": "v"}] * 200,
        [{"Key": "k", "Value": "v"}] * 201,
        "length less than or equal to 200",
    ),
    ((*TAG, "Key"), "k" * 128, "k" * 129, "length less than or equal to 128"),
    ((*TAG, "Key"), "Zone:Straße=3/a@b", "bad#key", "regular expression pattern"),
    ((*TAG, "Key"), "k", "", "length greater than or equal to 1"),
    ((*TAG, "Value"), "", "v" * 257, "length less than or equal to 256"),
    ((*TAG, "Value"), "Ünïcode 値 7", "semi;colon", "regular expression pattern"),
]


def _with(path: tuple, value: Any) -> dict:
    request = copy.deepcopy(BASE)
    request["Configuration"]["Greengrass"]["Tags"] = [{"Key": "team", "Value": "vision"}]
    node = request
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return request


@pytest.mark.parametrize(("path", "inside", "outside", "words"), CASES, ids=[f"{c[0][-1]}-{c[3][:24]}" for c in CASES])
def test_rule_boundary(path: tuple, inside: Any, outside: Any, words: str) -> None:
    check_request("StartModelPackagingJob", _with(path, inside))
    with pytest.raises(ValidationException) as error:
        check_request("StartModelPackagingJob", _with(path, outside))
    assert words in error.value.message
    field = path[-1][:1].lower() + path[-1][1:]
    assert f".{field}'" in error.value.message or f"'{field}'" in error.value.message


@pytest.mark.parametrize(
    ("member", "missing_path"),
    [("ProjectName", "projectName"), ("ModelVersion", "modelVersion"), ("Configuration", "configuration")],
)
def test_required_members(member: str, missing_path: str) -> None:
    request = copy.deepcopy(BASE)
    del request[member]
    with pytest.raises(ValidationException, match=f"at '{missing_path}' failed to satisfy constraint: Member must not"):
        check_request("StartModelPackagingJob", request)


@pytest.mark.parametrize("member", ["S3OutputLocation", "ComponentName"])
def test_required_greengrass_members(member: str) -> None:
    with pytest.raises(ValidationException, match="Member must not be null"):
        check_request("StartModelPackagingJob", _with((*GG, member), None))


def test_unknown_member_is_named() -> None:
    with pytest.raises(ValidationException, match=r"Unknown parameter 'configuration\.greengrass\.ComponentNmae'"):
        check_request("StartModelPackagingJob", _with((*GG, "ComponentNmae"), "x"))


@pytest.mark.parametrize(
    ("member", "value", "ok"),
    [
        ("MaxResults", 1, True),
        ("MaxResults", 100, True),
        ("MaxResults", 0, False),
        ("MaxResults", 101, False),
        ("MaxResults", "5", False),
        ("MaxResults", True, False),
        ("NextToken", "abc+/=", True),
        ("NextToken", "a" * 2048, True),
        ("NextToken", "a" * 2049, False),
        ("NextToken", "abc-", False),
    ],
)
def test_list_paging_members(member: str, value: Any, ok: bool) -> None:
    request = {"ProjectName": "p", member: value}
    if ok:
        check_request("ListModelPackagingJobs", request)
    else:
        with pytest.raises(ValidationException, match=member[:1].lower() + member[1:]):
            check_request("ListModelPackagingJobs", request)


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ({"input_size": [224, 224, 3]}, "length less than or equal to 2"),
        ({"input_size": [31, 224]}, "greater than or equal to 32"),
        ({"threshold": 1.01}, "less than or equal to 1.0"),
        ({"std": [0.2, 0.0, 0.2]}, "greater than 0.0"),
        ({"interpolation": "bilinear"}, "enum value set"),
        ({"labels": [{"name": "background", "color": "#FFFFFG"}, {"name": "a", "color": "#000000"}]}, "pattern"),
        ({"normalize": "yes"}, "boolean"),
    ],
)
def test_model_metadata_rules(metadata: dict, words: str) -> None:
    with pytest.raises(ValidationException, match=words):
        check_value(metadata, "ModelMetadata", "modelMetadata")


def test_every_validation_error_is_reported_at_once_as_aws_does() -> None:
    request = copy.deepcopy(BASE)
    request["ProjectName"] = "-bad"
    request["JobName"] = "j" * 65
    request["Configuration"]["Greengrass"]["ComponentName"] = "com/example"
    del request["ModelVersion"]
    with pytest.raises(ValidationException) as error:
        check_request("StartModelPackagingJob", request)
    message = error.value.message
    assert message.startswith("4 validation errors detected: "), message
    for words in (
        "at 'modelVersion' failed to satisfy constraint: Member must not be null",
        "Value '-bad' at 'projectName' failed to satisfy constraint: Member must satisfy regular expression",
        "at 'jobName' failed to satisfy constraint: Member must have length less than or equal to 64",
        "at 'configuration.greengrass.componentName' failed to satisfy constraint",
    ):
        assert words in message
    assert message.count("; Value ") == 3
