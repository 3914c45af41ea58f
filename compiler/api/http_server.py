"""`lookout-edge serve`: the packaging service over Lookout for Vision's rest-json binding, so boto3 and the aws CLI
work unchanged against it (`endpoint_url`, with the service model from `lookout-edge service-model`).

Routes, member locations, validation and error shapes all come from the API model (api_model.py, http_binding.py,
errors.py). Bound to loopback by default; bound elsewhere, every request must carry a SigV4 signature of configured
credentials. Starlette routes, uvicorn serves (TLS when a certificate is given; SIGTERM stops it gracefully:
queued jobs stay in the database and running ones in their detached workers)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from compiler.api.api_model import OPERATIONS, SHAPES
from compiler.api.errors import (
    RETRY_AFTER_HEADER,
    InternalServerException,
    ServiceError,
    ValidationException,
)
from compiler.api.http_binding import BODY, http_operations, lower_camel, member_locations
from compiler.api.service import Service
from compiler.api.service_model import SERVICE_NAME
from compiler.api.sigv4 import check_signature

MAX_REQUEST_BYTES = 1 << 20  # requests carry names and paths, never model bytes
log = logging.getLogger("lookout_edge.http")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()  # rest-json timestamps are epoch seconds
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_json_default, separators=(",", ":")).encode()


def _error_response(error: ServiceError) -> Response:
    headers = {"x-amzn-ErrorType": error.code}
    if "RetryAfterSeconds" in error.fields:
        headers[RETRY_AFTER_HEADER] = str(error.fields["RetryAfterSeconds"])
    return _JSON(error.to_response(), status_code=error.http_status, headers=headers)


def _member_value(operation: str, member: str, raw: str) -> Any:
    """A URI, query-string or header value as its shape's type (MaxResults is an integer)."""
    if SHAPES[OPERATIONS[operation]["input"][member]]["type"] != "integer":
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ValidationException(f"Value '{raw[:64]}' at '{lower_camel(member)}' must be an integer") from None


def request_params(operation: str, request: Request, body: bytes) -> dict[str, Any]:
    """The operation's input members from where the binding puts them."""
    try:
        document = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValidationException("The request body must be a JSON object")
    locations = member_locations(operation)
    body_members = {member for member, location in locations.items() if location.where == BODY}
    unknown = sorted(set(document) - body_members)
    if unknown:
        raise ValidationException(f"{operation} has no member '{unknown[0][:64]}'")
    params: dict[str, Any] = {}
    for member, location in locations.items():
        raw = {
            "uri": request.path_params.get(location.name),
            "querystring": request.query_params.get(location.name),
            "header": request.headers.get(location.name),
        }.get(location.where)
        if location.where == BODY:
            if member in document and document[member] is not None:
                params[member] = document[member]
        elif raw is not None:
            params[member] = _member_value(operation, member, raw)
    return params


def _signed_url(request: Request) -> str:
    """The URL as the client signed it: scheme, Host header, the raw (still percent-encoded) path and query."""
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{request.url.scheme}://{request.headers.get('host', '')}{path}" + (f"?{query}" if query else "")


async def _read_body(request: Request) -> bytes:
    """The body, refused (not read on) once it passes MAX_REQUEST_BYTES, whether its length is declared or not."""
    too_big = ValidationException(f"The request body is too large: at most {MAX_REQUEST_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _endpoint(
    service: Service, operation: str, credentials: Mapping[str, str] | None
) -> Callable[[Request], Awaitable[Response]]:
    code = OPERATIONS[operation]["http"]["code"]

    async def handle(request: Request) -> Response:
        try:
            body = await _read_body(request)
            if credentials is not None:
                check_signature(request.method, _signed_url(request), request.headers, body, credentials, SERVICE_NAME)
            params = request_params(operation, request, body)
            result = await run_in_threadpool(service.call, operation, params)
        except ServiceError as error:
            return _error_response(error)
        except Exception:
            log.exception("%s failed", operation)
            return _error_response(InternalServerException("The service failed; see its log.", RetryAfterSeconds=5))
        return _JSON(result, status_code=code)

    return handle


async def _not_found(request: Request, _: Exception) -> Response:
    return _JSON(
        {"Message": f"No operation at {request.method} {request.url.path[:200]}"},
        status_code=404,
        headers={"x-amzn-ErrorType": "UnknownOperationException"},
    )


def build_app(service: Service, credentials: Mapping[str, str] | None = None) -> Starlette:
    """The ASGI application: one route per operation with an HTTP binding. With `credentials` (access key →
    secret key), every request must be SigV4-signed with one of them."""
    routes = [
        Route(spec["http"]["uri"], _endpoint(service, name, credentials), methods=[spec["http"]["method"]])
        for name, spec in http_operations().items()
    ]
    return Starlette(routes=routes, exception_handlers={404: _not_found})
