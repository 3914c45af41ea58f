"""Agent errors, each tied to the gRPC status code the Edge Agent API documents for it.

The domain code raises these; only the servicer turns `code` into a `grpc.StatusCode`.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class; `code` is the name of a gRPC status code."""

    code = "INTERNAL"


class InvalidArgument(AgentError):
    code = "INVALID_ARGUMENT"


class ModelNotFound(AgentError):
    code = "NOT_FOUND"


class PermissionDenied(AgentError):
    """The caller asked the agent to read or write a shared-memory segment the caller itself may not."""

    code = "PERMISSION_DENIED"


class NotInRequiredState(AgentError):
    code = "FAILED_PRECONDITION"


class Overloaded(AgentError):
    """Too many queued requests for a model, or not enough memory to load one."""

    code = "RESOURCE_EXHAUSTED"


class RuntimeFailure(AgentError):
    """The inference runtime failed and gave no more information than its own message."""

    code = "UNKNOWN"


class EngineUnavailable(AgentError):
    """The engine's process (the TensorRT runner) stopped or stopped answering; it restarts for the next request."""

    code = "UNAVAILABLE"


class ModelOutputError(AgentError):
    """The model produced something the result mapping cannot use (e.g. a NaN score)."""

    code = "INTERNAL"


QUOTED_CHARS = 64


def quoted(text: str) -> str:
    """A client's string as error messages show it: quoted, and cut (with its length) when it is long."""
    if len(text) <= QUOTED_CHARS:
        return repr(text)
    return f"{text[:QUOTED_CHARS]!r}… ({len(text)} characters)"
