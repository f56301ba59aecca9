"""Who is calling, read from the SigV4 ``Authorization`` header (never verified).

The emulator checks no signatures.  It reads the access key id (two magic ids make every
call fail, for tests of fatal errors), the region of the signing scope (the region the call
is answered in, and the one in every ARN the emulator mints) and the service the request
was signed for (``s3`` goes to the emulator's S3).  A presigned URL carries the same scope
in its ``X-Amz-Credential`` query parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

#: access key id whose every call is refused with AccessDeniedException
DENIED_KEY = "denied"
#: access key id the "service" does not know: UnrecognizedClientException
UNKNOWN_KEY = "unknown"
#: the end of an S3 signing scope (``KEY/DATE/REGION/s3/aws4_request``)
S3_SCOPE_END = "/s3/aws4_request"


@dataclass(frozen=True, slots=True)
class Caller:
    """The access key id and region of one request."""

    access_key: str
    region: str


def caller_from_header(authorization: str | None, default_region: str) -> Caller:
    """Parse ``AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ...``."""
    if not authorization:
        return Caller("", default_region)
    start = authorization.find("Credential=")
    if start < 0:
        return Caller("", default_region)
    end = authorization.find(",", start)
    scope = authorization[start + 11 : end if end >= 0 else len(authorization)].strip()
    parts = scope.split("/")
    region = parts[2] if len(parts) >= 5 and parts[2] else default_region
    return Caller(parts[0], region)


def region_of_scope(scope: str | None, default_region: str) -> str:
    """The region of a credential scope (``KEY/DATE/REGION/SERVICE/aws4_request``)."""
    parts = (scope or "").split("/")
    return parts[2] if len(parts) >= 5 and parts[2] else default_region
