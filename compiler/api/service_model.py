"""The botocore service model (`service-2.json`, `paginators-1.json`) of what `lookout-edge serve` speaks, generated
from the API model. Current botocore no longer ships `lookoutvision`; with these files on `AWS_DATA_PATH`,
`boto3.client("lookoutvision", endpoint_url=...)` and `aws lookoutvision --endpoint-url ...` work unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compiler.api.api_model import API_VERSION, SHAPES
from compiler.api.errors import ERRORS, RETRY_AFTER_HEADER
from compiler.api.http_binding import BODY, http_operations, member_locations

SERVICE_NAME = "lookoutvision"
METADATA = {
    "apiVersion": API_VERSION,
    "endpointPrefix": SERVICE_NAME,
    "jsonVersion": "1.1",
    "protocol": "rest-json",
    "protocols": ["rest-json"],
    "serviceFullName": "Amazon Lookout for Vision",
    "serviceId": "LookoutVision",
    "signatureVersion": "v4",
    "signingName": SERVICE_NAME,
    "uid": f"lookoutvision-{API_VERSION}",
}
# Shapes the error structures use beyond the API model's.
ERROR_SHAPES = {
    "ExceptionString": {"type": "string"},
    "ResourceType": {"type": "string", "enum": ["PROJECT", "DATASET", "MODEL", "TRIAL", "MODEL_PACKAGE_JOB"]},
    "RetryAfterSeconds": {"type": "integer"},
}
SCALAR_KEYS = ("min", "max", "pattern", "enum")  # botocore's names for the constraints it knows


def _shape(spec: dict[str, Any]) -> dict[str, Any]:
    """One API-model shape in botocore's form (members by reference; constraints botocore knows)."""
    shape: dict[str, Any] = {"type": spec["type"], **{k: spec[k] for k in SCALAR_KEYS if k in spec}}
    if spec["type"] == "list":
        shape["member"] = {"shape": spec["member"]}
    if spec["type"] == "structure":
        shape["members"] = {name: {"shape": ref} for name, ref in spec["members"].items()}
        if spec.get("required"):
            shape["required"] = list(spec["required"])
    return shape


def _request(operation: str, spec: dict[str, Any]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for member, location in member_locations(operation).items():
        entry: dict[str, Any] = {"shape": spec["input"][member]}
        if location.where != BODY:
            entry.update(location=location.where, locationName=location.name)
        if member == spec.get("idempotency"):
            entry["idempotencyToken"] = True
        members[member] = entry
    return {"type": "structure", "required": list(spec["required"]), "members": members}


def _error(error: type) -> dict[str, Any]:
    members: dict[str, Any] = {"Message": {"shape": "ExceptionString"}}
    for member, ref in error.members.items():
        members[member] = {"shape": ref}
        if member == "RetryAfterSeconds":
            members[member].update(location="header", locationName=RETRY_AFTER_HEADER)
    shape = {
        "type": "structure",
        "required": ["Message", *[m for m in error.members if m != "RetryAfterSeconds"]],
        "members": members,
        "error": {"httpStatusCode": error.http_status},
        "exception": True,
    }
    return {**shape, "fault": True} if error.fault else shape


def service_model() -> dict[str, Any]:
    """service-2.json as a dict."""
    shapes = {name: _shape(spec) for name, spec in SHAPES.items()} | dict(ERROR_SHAPES)
    operations = {}
    for operation, spec in http_operations().items():
        shapes[f"{operation}Request"] = _request(operation, spec)
        shapes[f"{operation}Response"] = {
            "type": "structure",
            "members": {member: {"shape": ref} for member, ref in spec["output"].items()},
        }
        operations[operation] = {
            "name": operation,
            "http": {"method": spec["http"]["method"], "requestUri": spec["http"]["uri"]}
            | ({"responseCode": spec["http"]["code"]} if spec["http"]["code"] != 200 else {}),
            "input": {"shape": f"{operation}Request"},
            "output": {"shape": f"{operation}Response"},
            "errors": [{"shape": error.code} for error in ERRORS],
            "documentation": spec["doc"],
        }
    shapes |= {error.code: _error(error) for error in ERRORS}
    return {"version": "2.0", "metadata": METADATA, "operations": operations, "shapes": shapes}


def paginators() -> dict[str, Any]:
    """paginators-1.json as a dict: every list operation pages by NextToken / MaxResults."""
    return {
        "pagination": {
            operation: {
                "input_token": "NextToken",
                "output_token": "NextToken",
                "limit_key": "MaxResults",
                "result_key": spec["paginated"],
            }
            for operation, spec in http_operations().items()
            if "paginated" in spec
        }
    }


def write_service_model(data_path: Path) -> list[Path]:
    """Write both files where botocore looks under an AWS_DATA_PATH folder; returns their paths."""
    folder = data_path / SERVICE_NAME / API_VERSION
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in (("service-2.json", service_model()), ("paginators-1.json", paginators())):
        (folder / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        written.append(folder / name)
    return written
