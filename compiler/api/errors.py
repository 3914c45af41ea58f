"""Service errors, named and shaped as Lookout for Vision's (botocore error shapes)."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base of every error the service returns to a caller. `members`: the error shape's members beyond Message
    (member → shape in api_model.SHAPES), as the service model declares them; `fault`: the service's failure."""

    code = "InternalServerException"
    http_status = 500
    members: ClassVar[dict[str, str]] = {}
    fault = False

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def to_response(self) -> dict[str, object]:
        """The error body: `Message` plus the shape's own members."""
        return {"Message": self.message, **self.fields}


class ValidationException(ServiceError):
    code, http_status = "ValidationException", 400


class AccessDeniedException(ServiceError):
    code, http_status = "AccessDeniedException", 403


RESOURCE = {"ResourceId": "ExceptionString", "ResourceType": "ResourceType"}
QUOTA = {"QuotaCode": "ExceptionString", "ServiceCode": "ExceptionString"}


class ResourceNotFoundException(ServiceError):
    code, http_status = "ResourceNotFoundException", 404
    members: ClassVar[dict[str, str]] = RESOURCE

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ConflictException(ServiceError):
    code, http_status = "ConflictException", 409
    members: ClassVar[dict[str, str]] = RESOURCE

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ServiceQuotaExceededException(ServiceError):
    """In the API model as AWS had it; nothing raises it since a full queue throttles."""

    code, http_status = "ServiceQuotaExceededException", 402
    members: ClassVar[dict[str, str]] = {**RESOURCE, **QUOTA}


class ThrottlingException(ServiceError):
    code, http_status = "ThrottlingException", 429
    members: ClassVar[dict[str, str]] = {**QUOTA, "RetryAfterSeconds": "RetryAfterSeconds"}


class InternalServerException(ServiceError):
    code, http_status = "InternalServerException", 500
    members: ClassVar[dict[str, str]] = {"RetryAfterSeconds": "RetryAfterSeconds"}
    fault = True


# Every error an operation may return, as the service model lists them.
ERRORS = (
    AccessDeniedException,
    ConflictException,
    InternalServerException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ThrottlingException,
    ValidationException,
)
RETRY_AFTER_HEADER = "Retry-After"  # RetryAfterSeconds travels in this header
