"""Checks values against the shapes in `api_model.py`; errors read like the AWS services' own."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import regex

from compiler.api.api_model import OPERATIONS, SHAPES
from compiler.api.errors import ValidationException


@cache
def _compiled(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def _camel(member: str) -> str:
    return member[:1].lower() + member[1:]


def _problem(value: Any, path: str, constraint: str) -> str:
    shown = value if isinstance(value, (str, int, float)) else type(value).__name__
    return f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"


def _raise_if_any(problems: list[str]) -> None:
    """One ValidationException listing every problem, as AWS reports them ("2 validation errors detected: a; b")."""
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected"
        raise ValidationException(f"{count}: " + "; ".join(problems))


def check_value(value: Any, shape_name: str, path: str) -> None:
    """Raise ValidationException naming every field, value and rule that `value` breaks in the shape."""
    _raise_if_any(value_problems(value, shape_name, path))


def value_problems(value: Any, shape_name: str, path: str) -> list[str]:
    """Every way `value` breaks the shape, each naming the field, the value and the rule."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        if not isinstance(value, dict):
            return [_problem(value, path, "Member must be an object")]
        return _member_problems(value, shape["members"], shape.get("required", []), path)
    if kind == "list":
        return _list_problems(value, shape, path)
    if kind == "string":
        return _string_problems(value, shape, path)
    if kind in ("integer", "float"):
        return _number_problems(value, shape, path, kind)
    if kind == "boolean":
        return [] if isinstance(value, bool) else [_problem(value, path, "Member must be a boolean (true or false)")]
    if kind == "timestamp":
        return [] if isinstance(value, dt.datetime) else [_problem(value, path, "Member must be a timestamp")]
    raise AssertionError(f"unknown shape type {kind}")  # pragma: no cover - the model only uses the kinds above


def _member_problems(value: dict, members: dict[str, str], required: list[str], path: str) -> list[str]:
    prefix = f"{path}." if path else ""
    problems = [
        f"Unknown parameter '{prefix}{key}'; valid parameters are: {', '.join(members)}"
        for key in value
        if key not in members
    ]
    problems += [
        _problem("null", f"{prefix}{_camel(key)}", "Member must not be null")
        for key in required
        if value.get(key) is None
    ]
    for key, member_value in value.items():
        if member_value is not None and key in members:
            problems += value_problems(member_value, members[key], f"{prefix}{_camel(key)}")
    return problems


def _list_problems(value: Any, shape: dict, path: str) -> list[str]:
    if not isinstance(value, list):
        return [_problem(value, path, "Member must be a list")]
    problems = []
    if "min" in shape and len(value) < shape["min"]:
        problems.append(_problem(value, path, f"Member must have length greater than or equal to {shape['min']}"))
    if "max" in shape and len(value) > shape["max"]:
        problems.append(_problem(value, path, f"Member must have length less than or equal to {shape['max']}"))
    for i, item in enumerate(value):
        problems += value_problems(item, shape["member"], f"{path}.{i + 1}.member")
    return problems


def _string_problems(value: Any, shape: dict, path: str) -> list[str]:
    if not isinstance(value, str):
        return [_problem(value, path, "Member must be a string")]
    if "enum" in shape and value not in shape["enum"]:
        return [_problem(value, path, f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]")]
    problems = []
    if "min" in shape and len(value) < shape["min"]:
        problems.append(_problem(value, path, f"Member must have length greater than or equal to {shape['min']}"))
    if "max" in shape and len(value) > shape["max"]:
        problems.append(_problem(value, path, f"Member must have length less than or equal to {shape['max']}"))
    if "pattern" in shape and not _compiled(shape["pattern"]).fullmatch(value):
        problems.append(_problem(value, path, f"Member must satisfy regular expression pattern: {shape['pattern']}"))
    return problems


def _number_problems(value: Any, shape: dict, path: str, kind: str) -> list[str]:
    allowed = (int,) if kind == "integer" else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        return [_problem(value, path, f"Member must be {'an integer' if kind == 'integer' else 'a number'}")]
    problems = []
    if "min" in shape and value < shape["min"]:
        problems.append(_problem(value, path, f"Member must have value greater than or equal to {shape['min']}"))
    if "max" in shape and value > shape["max"]:
        problems.append(_problem(value, path, f"Member must have value less than or equal to {shape['max']}"))
    if "min_exclusive" in shape and value <= shape["min_exclusive"]:
        problems.append(_problem(value, path, f"Member must have value greater than {shape['min_exclusive']}"))
    return problems


def check_request(operation: str, params: dict[str, Any]) -> None:
    """Validate an operation's input parameters against the model."""
    spec = OPERATIONS[operation]
    _raise_if_any(_member_problems(params, spec["input"], spec["required"], ""))


def check_response(operation: str, response: dict[str, Any]) -> None:
    """Validate a response against the operation's output shape (used by tests as a contract check)."""
    _raise_if_any(_member_problems(response, OPERATIONS[operation]["output"], [], ""))
