"""Checks values against the shapes in `api_model.py`; errors read like the AWS services' own."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import regex

from compiler.api_model import OPERATIONS, SHAPES
from compiler.errors import ValidationException


@cache
def _compiled(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def _camel(member: str) -> str:
    return member[:1].lower() + member[1:]


def _fail(value: Any, path: str, constraint: str) -> ValidationException:
    shown = value if isinstance(value, (str, int, float)) else type(value).__name__
    return ValidationException(
        f"1 validation error detected: Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"
    )


def check_value(value: Any, shape_name: str, path: str) -> None:
    """Raise ValidationException naming the field, the value and the rule, if `value` breaks the shape."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        _check_structure(value, shape, path)
    elif kind == "list":
        _check_list(value, shape, path)
    elif kind == "string":
        _check_string(value, shape, path)
    elif kind in ("integer", "float"):
        _check_number(value, shape, path, kind)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(value, path, "Member must be a boolean (true or false)")
    elif kind == "timestamp":
        if not isinstance(value, dt.datetime):
            raise _fail(value, path, "Member must be a timestamp")
    else:  # pragma: no cover - the model only uses the kinds above
        raise AssertionError(f"unknown shape type {kind}")


def _check_structure(value: Any, shape: dict, path: str) -> None:
    if not isinstance(value, dict):
        raise _fail(value, path, "Member must be an object")
    _check_members(value, shape["members"], shape.get("required", []), path)


def _check_members(value: dict, members: dict[str, str], required: list[str], path: str) -> None:
    prefix = f"{path}." if path else ""
    for key in value:
        if key not in members:
            known = ", ".join(members)
            raise ValidationException(f"Unknown parameter '{prefix}{key}'; valid parameters are: {known}")
    for key in required:
        if value.get(key) is None:
            raise _fail("null", f"{prefix}{_camel(key)}", "Member must not be null")
    for key, member_value in value.items():
        if member_value is not None:
            check_value(member_value, members[key], f"{prefix}{_camel(key)}")


def _check_list(value: Any, shape: dict, path: str) -> None:
    if not isinstance(value, list):
        raise _fail(value, path, "Member must be a list")
    if "min" in shape and len(value) < shape["min"]:
        raise _fail(value, path, f"Member must have length greater than or equal to {shape['min']}")
    if "max" in shape and len(value) > shape["max"]:
        raise _fail(value, path, f"Member must have length less than or equal to {shape['max']}")
    for i, item in enumerate(value):
        check_value(item, shape["member"], f"{path}.{i + 1}.member")


def _check_string(value: Any, shape: dict, path: str) -> None:
    if not isinstance(value, str):
        raise _fail(value, path, "Member must be a string")
    if "enum" in shape and value not in shape["enum"]:
        raise _fail(value, path, f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]")
    if "min" in shape and len(value) < shape["min"]:
        raise _fail(value, path, f"Member must have length greater than or equal to {shape['min']}")
    if "max" in shape and len(value) > shape["max"]:
        raise _fail(value, path, f"Member must have length less than or equal to {shape['max']}")
    if "pattern" in shape and not _compiled(shape["pattern"]).fullmatch(value):
        raise _fail(value, path, f"Member must satisfy regular expression pattern: {shape['pattern']}")


def _check_number(value: Any, shape: dict, path: str, kind: str) -> None:
    allowed = (int,) if kind == "integer" else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise _fail(value, path, f"Member must be {'an integer' if kind == 'integer' else 'a number'}")
    if "min" in shape and value < shape["min"]:
        raise _fail(value, path, f"Member must have value greater than or equal to {shape['min']}")
    if "max" in shape and value > shape["max"]:
        raise _fail(value, path, f"Member must have value less than or equal to {shape['max']}")
    if "min_exclusive" in shape and value <= shape["min_exclusive"]:
        raise _fail(value, path, f"Member must have value greater than {shape['min_exclusive']}")


def check_request(operation: str, params: dict[str, Any]) -> None:
    """Validate an operation's input parameters against the model."""
    spec = OPERATIONS[operation]
    _check_members(params, spec["input"], spec["required"], "")


def check_response(operation: str, response: dict[str, Any]) -> None:
    """Validate a response against the operation's output shape (used by tests as a contract check)."""
    _check_members(response, OPERATIONS[operation]["output"], [], "")
