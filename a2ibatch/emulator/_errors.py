"""Service errors, and which code each emulated service uses for each kind of refusal.

The same refusal has a different code per service (A2I says ValidationException where
Textract says InvalidParameterException), so handlers ask a `Dialect` for the error instead
of spelling codes themselves.  The wire format (header or ``__type``) is the protocol
layer's business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

A2I: Final = "sagemaker-a2i-runtime"
TEXTRACT: Final = "textract"
REKOGNITION: Final = "rekognition"
SAGEMAKER: Final = "sagemaker"
SERVICE_QUOTAS: Final = "service-quotas"

#: what Textract and Rekognition say when they cannot read the input's S3 object (its
#: bucket is in another region, say)
S3_OBJECT_UNREADABLE: Final = (
    "Unable to get object metadata from S3. Check object key, region and/or access permissions."
)


class ServiceError(Exception):
    """An error answer: its code, message, HTTP status, and any modelled extra fields."""

    def __init__(self, code: str, message: str, status: int = 400, **fields: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields


@dataclass(frozen=True, slots=True)
class Dialect:
    """The error codes (and statuses) one service uses."""

    service: str
    validation: str
    not_found: str
    not_found_status: int
    internal: str
    throttle_status: int

    def invalid(self, message: str) -> ServiceError:
        return ServiceError(self.validation, message, 400)

    def missing(self, message: str) -> ServiceError:
        return ServiceError(self.not_found, message, self.not_found_status)

    def server_fault(self) -> ServiceError:
        return ServiceError(self.internal, "We encountered an internal error. Try again.", 500)

    def throttled(self, code: str) -> ServiceError:
        return ServiceError(code, "Rate exceeded", self.throttle_status)

    def unreadable_s3_object(self) -> ServiceError:
        return ServiceError("InvalidS3ObjectException", S3_OBJECT_UNREADABLE, 400)

    def access_denied(self) -> ServiceError:
        status = 403 if self.service == A2I else 400
        return ServiceError(
            "AccessDeniedException",
            "User is not authorized to perform this action (access key 'denied')",
            status,
        )

    def unrecognized_client(self) -> ServiceError:
        return ServiceError(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            403,
        )

    def too_many_in_progress(self, limit: int) -> ServiceError:
        message = f"You have reached the limit of {limit} human loops in progress for this account"
        if self.service == A2I:
            return ServiceError("ServiceQuotaExceededException", message, 402)
        return ServiceError(
            "HumanLoopQuotaExceededException",
            message,
            400,
            ResourceType="HumanLoop",
            QuotaCode="L-E1F4A3C6",
            ServiceCode="sagemaker",
        )


DIALECTS: Final[dict[str, Dialect]] = {
    A2I: Dialect(
        A2I, "ValidationException", "ResourceNotFoundException", 404, "InternalServerException", 429
    ),
    TEXTRACT: Dialect(
        TEXTRACT,
        "InvalidParameterException",
        "InvalidParameterException",
        400,
        "InternalServerError",
        400,
    ),
    REKOGNITION: Dialect(
        REKOGNITION,
        "InvalidParameterException",
        "ResourceNotFoundException",
        400,
        "InternalServerError",
        400,
    ),
    SAGEMAKER: Dialect(
        SAGEMAKER, "ValidationException", "ResourceNotFound", 400, "InternalFailure", 400
    ),
    SERVICE_QUOTAS: Dialect(
        SERVICE_QUOTAS,
        "IllegalArgumentException",
        "NoSuchResourceException",
        400,
        "ServiceException",
        400,
    ),
}
