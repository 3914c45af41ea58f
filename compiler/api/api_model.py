"""The one definition of every request and response shape, as data (botocore service-model style).

Validation (`validation.py`), the CLI's flags and `--generate-cli-skeleton` (`cli.py`) and the
table-driven tests all read this module. Constraints for the packaging operations are Lookout for
Vision's own (`lookoutvision/2020-11-20/service-2.json`); registry operations follow the same style.
Patterns are Java regular expressions matched against the whole value, as AWS services do.
"""

from __future__ import annotations

import re
from typing import Any

from edge_agent.bundle.model_spec import CLASSIFICATION_OUTPUTS, INTERPOLATION_NAMES, MODEL_TYPES

DESCRIPTION_PATTERN = r"[a-zA-Z0-9-_. ()':,;?]+"
API_VERSION = "2020-11-20"  # Lookout for Vision's; every operation's HTTP path starts with it

SHAPES: dict[str, dict] = {
    # --- scalars -----------------------------------------------------------------------------
    "ProjectName": {"type": "string", "min": 1, "max": 255, "pattern": r"[a-zA-Z0-9][a-zA-Z0-9_\-]*"},
    "ProjectArn": {"type": "string"},
    "ModelVersion": {"type": "string", "min": 1, "max": 10, "pattern": r"([1-9][0-9]*|latest)"},
    "ModelVersionNoLatest": {"type": "string", "min": 1, "max": 10, "pattern": r"([1-9][0-9]*)"},
    "ModelArn": {"type": "string"},
    "ModelType": {"type": "string", "enum": list(MODEL_TYPES)},
    "ModelStatus": {"type": "string", "enum": ["TRAINED"]},
    "ModelFile": {"type": "string", "min": 1, "max": 4096},
    "ModelDescription": {"type": "string", "min": 1, "max": 500, "pattern": r"[0-9A-Za-z\.\-_]*"},
    "ModelPackagingJobName": {"type": "string", "min": 1, "max": 64, "pattern": r"[a-zA-Z0-9-]+"},
    "ModelPackagingJobDescription": {"type": "string", "min": 1, "max": 256, "pattern": DESCRIPTION_PATTERN},
    "ModelPackagingJobStatus": {"type": "string", "enum": ["CREATED", "RUNNING", "SUCCEEDED", "FAILED"]},
    "ModelPackagingMethod": {"type": "string", "min": 1, "max": 32, "pattern": r"^[a-zA-Z0-9]+"},
    "ModelPackagingStatusMessage": {"type": "string"},
    "ClientToken": {"type": "string", "min": 1, "max": 64, "pattern": r"^[a-zA-Z0-9-]+$"},
    "CompilerOptions": {"type": "string", "min": 3, "max": 1024, "pattern": r".*"},
    "TargetDevice": {"type": "string", "enum": ["jetson_xavier"]},
    "TargetPlatformOs": {"type": "string", "enum": ["LINUX"]},
    "TargetPlatformArch": {"type": "string", "enum": ["ARM64", "X86_64"]},
    "TargetPlatformAccelerator": {"type": "string", "enum": ["NVIDIA"]},
    "S3BucketName": {"type": "string", "min": 3, "max": 63, "pattern": r"[0-9A-Za-z\.\-_]*"},
    "S3KeyPrefix": {
        "type": "string",
        "max": 1024,
        "pattern": r"^([a-zA-Z0-9!_.*'()-][/a-zA-Z0-9!_.*'()-]*)?$",
    },
    "ComponentName": {"type": "string", "min": 1, "max": 128, "pattern": r"[a-zA-Z0-9-_.]+"},
    "ComponentVersion": {
        "type": "string",
        "min": 1,
        "max": 64,
        "pattern": r"^([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,6})$",
    },
    "ComponentDescription": {"type": "string", "min": 1, "max": 256, "pattern": DESCRIPTION_PATTERN},
    "ComponentVersionArn": {"type": "string"},
    "TagKey": {"type": "string", "min": 1, "max": 128, "pattern": r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"},
    "TagValue": {"type": "string", "min": 0, "max": 256, "pattern": r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"},
    "PageSize": {"type": "integer", "min": 1, "max": 100},
    "PaginationToken": {"type": "string", "max": 2048, "pattern": r"^[a-zA-Z0-9\/\+\=]{0,2048}$"},
    "DateTime": {"type": "timestamp"},
    "OutputPath": {"type": "string", "min": 1, "max": 4096},
    "Sha256": {"type": "string"},
    # --- model metadata document (the --model-metadata file) ---------------------------------
    "ImageDimension": {"type": "integer", "min": 32, "max": 4096},
    "InputSize": {"type": "list", "member": "ImageDimension", "min": 2, "max": 2},
    "Interpolation": {"type": "string", "enum": list(INTERPOLATION_NAMES)},
    "PositiveFloat": {"type": "float", "min_exclusive": 0.0},
    "ChannelFloat": {"type": "float"},
    "ChannelTriple": {"type": "list", "member": "ChannelFloat", "min": 3, "max": 3},
    "PositiveChannelTriple": {"type": "list", "member": "PositiveFloat", "min": 3, "max": 3},
    "UnitInterval": {"type": "float", "min": 0.0, "max": 1.0},
    "ClassIndex": {"type": "integer", "min": 0, "max": 1023},
    "ClassificationOutput": {"type": "string", "enum": list(CLASSIFICATION_OUTPUTS)},
    "OutputName": {"type": "string", "min": 1, "max": 256},
    "LabelName": {"type": "string", "min": 1, "max": 256, "pattern": r"[a-zA-Z0-9_\-]*"},
    "HexColor": {"type": "string", "pattern": r"\#[0-9A-Fa-f]{6}"},
    "Boolean": {"type": "boolean"},
    "Label": {
        "type": "structure",
        "required": ["name", "color"],
        "members": {"name": "LabelName", "color": "HexColor"},
    },
    "LabelList": {"type": "list", "member": "Label", "min": 2, "max": 101},
    "ModelMetadata": {
        "type": "structure",
        "members": {
            "input_size": "InputSize",
            "interpolation": "Interpolation",
            "scale": "PositiveFloat",
            "normalize": "Boolean",
            "mean": "ChannelTriple",
            "std": "PositiveChannelTriple",
            "threshold": "UnitInterval",
            "anomalous_class_index": "ClassIndex",
            "classification_output": "ClassificationOutput",
            "score_output": "OutputName",
            "labels": "LabelList",
        },
    },
    # --- structures ---------------------------------------------------------------------------
    "TargetPlatform": {
        "type": "structure",
        "required": ["Os", "Arch"],
        "members": {"Os": "TargetPlatformOs", "Arch": "TargetPlatformArch", "Accelerator": "TargetPlatformAccelerator"},
    },
    "S3Location": {
        "type": "structure",
        "required": ["Bucket"],
        "members": {"Bucket": "S3BucketName", "Prefix": "S3KeyPrefix"},
    },
    "Tag": {"type": "structure", "required": ["Key", "Value"], "members": {"Key": "TagKey", "Value": "TagValue"}},
    "TagList": {"type": "list", "member": "Tag", "min": 0, "max": 200},
    "GreengrassConfiguration": {
        "type": "structure",
        "required": ["S3OutputLocation", "ComponentName"],
        "members": {
            "CompilerOptions": "CompilerOptions",
            "TargetDevice": "TargetDevice",
            "TargetPlatform": "TargetPlatform",
            "S3OutputLocation": "S3Location",
            "ComponentName": "ComponentName",
            "ComponentVersion": "ComponentVersion",
            "ComponentDescription": "ComponentDescription",
            "Tags": "TagList",
        },
    },
    "ModelPackagingConfiguration": {
        "type": "structure",
        "required": ["Greengrass"],
        "members": {"Greengrass": "GreengrassConfiguration"},
    },
    "GreengrassOutputDetails": {
        "type": "structure",
        "members": {
            "ComponentVersionArn": "ComponentVersionArn",
            "ComponentName": "ComponentName",
            "ComponentVersion": "ComponentVersion",
        },
    },
    "ModelPackagingOutputDetails": {"type": "structure", "members": {"Greengrass": "GreengrassOutputDetails"}},
    "ModelPackagingDescription": {
        "type": "structure",
        "members": {
            "JobName": "ModelPackagingJobName",
            "ProjectName": "ProjectName",
            "ModelVersion": "ModelVersion",
            "ModelPackagingConfiguration": "ModelPackagingConfiguration",
            "ModelPackagingJobDescription": "ModelPackagingJobDescription",
            "ModelPackagingMethod": "ModelPackagingMethod",
            "ModelPackagingOutputDetails": "ModelPackagingOutputDetails",
            "Status": "ModelPackagingJobStatus",
            "StatusMessage": "ModelPackagingStatusMessage",
            "CreationTimestamp": "DateTime",
            "LastUpdatedTimestamp": "DateTime",
        },
    },
    "ModelPackagingJobMetadata": {
        "type": "structure",
        "members": {
            "JobName": "ModelPackagingJobName",
            "ProjectName": "ProjectName",
            "ModelVersion": "ModelVersion",
            "ModelPackagingJobDescription": "ModelPackagingJobDescription",
            "ModelPackagingMethod": "ModelPackagingMethod",
            "Status": "ModelPackagingJobStatus",
            "StatusMessage": "ModelPackagingStatusMessage",
            "CreationTimestamp": "DateTime",
            "LastUpdatedTimestamp": "DateTime",
        },
    },
    "ModelPackagingJobsList": {"type": "list", "member": "ModelPackagingJobMetadata"},
    "ProjectMetadata": {
        "type": "structure",
        "members": {"ProjectArn": "ProjectArn", "ProjectName": "ProjectName", "CreationTimestamp": "DateTime"},
    },
    "ProjectMetadataList": {"type": "list", "member": "ProjectMetadata"},
    "ProjectDescriptionShape": {
        "type": "structure",
        "members": {
            "ProjectArn": "ProjectArn",
            "ProjectName": "ProjectName",
            "CreationTimestamp": "DateTime",
            "Models": "ModelMetadataList",
        },
    },
    "OutputPathList": {"type": "list", "member": "OutputPath"},
    "ModelDescriptionShape": {
        "type": "structure",
        "members": {
            "ModelVersion": "ModelVersion",
            "ModelArn": "ModelArn",
            "CreationTimestamp": "DateTime",
            "Description": "ModelDescription",
            "Status": "ModelStatus",
            "StatusMessage": "ModelPackagingStatusMessage",
            "ModelType": "ModelType",
            "ModelMetadata": "ModelMetadata",
            "ModelSha256": "Sha256",
        },
    },
    "ModelMetadataShape": {
        "type": "structure",
        "members": {
            "ModelVersion": "ModelVersion",
            "ModelArn": "ModelArn",
            "CreationTimestamp": "DateTime",
            "Description": "ModelDescription",
            "Status": "ModelStatus",
            "ModelType": "ModelType",
        },
    },
    "ModelMetadataList": {"type": "list", "member": "ModelMetadataShape"},
}


def _http(method: str, path: str, code: int = 200) -> dict[str, Any]:
    """The operation's rest-json binding: method, path (`{projectName}`: the member ProjectName from the URI) and
    success status. ClientToken travels in the X-Amzn-Client-Token header; NextToken and MaxResults, of GET
    requests, in the query string (http_binding.py)."""
    return {"method": method, "uri": f"/{API_VERSION}{path}", "code": code}


def _list_operation(member: str, shape: str, doc: str, path: str, in_project: bool = True) -> dict[str, Any]:
    """A paginated list operation: output `member` holds one page of `shape`; NextToken asks for the next."""
    scope = {"ProjectName": "ProjectName"} if in_project else {}
    return {
        "output": {member: shape, "NextToken": "PaginationToken"},
        "input": {**scope, "NextToken": "PaginationToken", "MaxResults": "PageSize"},
        "required": list(scope),
        "paginated": member,
        "http": _http("GET", path),
        "doc": doc,
    }


# Operation → output and input members (member name → shape) and which inputs are required. `idempotency` names the
# member the SDK fills with a fresh token when the caller gives none; `paginated`, the output member a page of a
# list operation holds (pagination.page_response); `http`, its rest-json binding (served by `lookout-edge serve`,
# written into the botocore service model); an operation without one is local to the CLI (ExportComponent writes
# files on the machine that runs it).
OPERATIONS: dict[str, dict] = {
    "CreateProject": {
        "output": {"ProjectMetadata": "ProjectMetadata"},
        "input": {"ProjectName": "ProjectName", "ClientToken": "ClientToken"},
        "required": ["ProjectName"],
        "idempotency": "ClientToken",
        "http": _http("POST", "/projects"),
        "doc": "Creates an empty project to hold model versions.",
    },
    "DescribeProject": {
        "output": {"ProjectDescription": "ProjectDescriptionShape"},
        "input": {"ProjectName": "ProjectName"},
        "required": ["ProjectName"],
        "http": _http("GET", "/projects/{projectName}"),
        "doc": "Describes a project and its model versions.",
    },
    "ListProjects": _list_operation(
        "Projects", "ProjectMetadataList", "Lists projects, newest first.", "/projects", in_project=False
    ),
    "DeleteProject": {
        "output": {"ProjectArn": "ProjectArn"},
        "input": {"ProjectName": "ProjectName", "ClientToken": "ClientToken"},
        "required": ["ProjectName"],
        "idempotency": "ClientToken",
        "http": _http("DELETE", "/projects/{projectName}"),
        "doc": "Deletes a project and its model versions (refused while a job runs).",
    },
    "CreateModel": {
        "output": {"ModelMetadata": "ModelMetadataShape"},
        "input": {
            "ProjectName": "ProjectName",
            "ModelFile": "ModelFile",
            "ModelType": "ModelType",
            "ModelMetadata": "ModelMetadata",
            "Description": "ModelDescription",
            "ClientToken": "ClientToken",
        },
        "required": ["ProjectName", "ModelFile"],
        "idempotency": "ClientToken",
        "http": _http("POST", "/projects/{projectName}/models", 202),
        "doc": "Imports a trained ONNX model as the project's next model version.",
    },
    "DescribeModel": {
        "output": {"ModelDescription": "ModelDescriptionShape"},
        "input": {"ProjectName": "ProjectName", "ModelVersion": "ModelVersion"},
        "required": ["ProjectName", "ModelVersion"],
        "http": _http("GET", "/projects/{projectName}/models/{modelVersion}"),
        "doc": "Describes one model version.",
    },
    "ListModels": _list_operation(
        "Models", "ModelMetadataList", "Lists a project's model versions.", "/projects/{projectName}/models"
    ),
    "DeleteModel": {
        "output": {"ModelArn": "ModelArn"},
        "input": {"ProjectName": "ProjectName", "ModelVersion": "ModelVersionNoLatest", "ClientToken": "ClientToken"},
        "required": ["ProjectName", "ModelVersion"],
        "idempotency": "ClientToken",
        "http": _http("DELETE", "/projects/{projectName}/models/{modelVersion}", 202),
        "doc": "Deletes a model version (refused while a job packages it).",
    },
    "StartModelPackagingJob": {
        "output": {"JobName": "ModelPackagingJobName"},
        "input": {
            "ProjectName": "ProjectName",
            "ModelVersion": "ModelVersion",
            "JobName": "ModelPackagingJobName",
            "Configuration": "ModelPackagingConfiguration",
            "Description": "ModelPackagingJobDescription",
            "ClientToken": "ClientToken",
        },
        "required": ["ProjectName", "ModelVersion", "Configuration"],
        "idempotency": "ClientToken",
        "http": _http("POST", "/projects/{projectName}/modelpackagingjobs"),
        "doc": "Starts an asynchronous job that compiles a model version into a Greengrass component.",
    },
    "DescribeModelPackagingJob": {
        "output": {"ModelPackagingDescription": "ModelPackagingDescription"},
        "input": {"ProjectName": "ProjectName", "JobName": "ModelPackagingJobName"},
        "required": ["ProjectName", "JobName"],
        "http": _http("GET", "/projects/{projectName}/modelpackagingjobs/{jobName}"),
        "doc": "Describes a model packaging job.",
    },
    "ListModelPackagingJobs": _list_operation(
        "ModelPackagingJobs",
        "ModelPackagingJobsList",
        "Lists a project's model packaging jobs, newest first.",
        "/projects/{projectName}/modelpackagingjobs",
    ),
    "ExportComponent": {
        "output": {"RecipeFile": "OutputPath", "ArtifactFiles": "OutputPathList"},
        "input": {"ComponentName": "ComponentName", "ComponentVersion": "ComponentVersion", "Output": "OutputPath"},
        "required": ["ComponentName", "ComponentVersion", "Output"],
        "doc": "Writes a packaged component in the greengrass-cli layout "
        "(recipes/ and artifacts/) for `greengrass-cli deployment create`.",
    },
}


def split_camel(name: str, separator: str) -> str:
    """An operation or member name in another convention: StartModelPackagingJob → start-model-packaging-job
    (the CLI, separator "-") or start_model_packaging_job (boto3's method names, "_")."""
    return re.sub(r"(?<!^)(?=[A-Z])", separator, name).lower()
