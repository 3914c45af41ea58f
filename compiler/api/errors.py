"""Service errors, named and shaped as Lookout for Vision's (botocore error shapes)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service returns to a caller."""

    code = "InternalServerException"
    http_status = 500

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


class ResourceNotFoundException(ServiceError):
    code, http_status = "ResourceNotFoundException", 404

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ConflictException(ServiceError):
    code, http_status = "ConflictException", 409

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ServiceQuotaExceededException(ServiceError):
    code, http_status = "ServiceQuotaExceededException", 402

    def __init__(self, message: str, quota_code: str) -> None:
        super().__init__(message, QuotaCode=quota_code, ServiceCode="lookoutvision")


class ThrottlingException(ServiceError):
    code, http_status = "ThrottlingException", 429


class InternalServerException(ServiceError):
    code, http_status = "InternalServerException", 500
