"""Who is calling, read from the SigV4 ``Authorization`` header (never verified).

The emulator checks no signatures.  It reads the access key id (two magic ids make every
call fail, for tests of fatal errors) and the region of the signing scope (it goes into
every ARN the emulator mints).
"""

from __future__ import annotations

from dataclasses import dataclass

#: access key id whose every call is refused with AccessDeniedException
DENIED_KEY = "denied"
#: access key id the "service" does not know: UnrecognizedClientException
UNKNOWN_KEY = "unknown"


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
