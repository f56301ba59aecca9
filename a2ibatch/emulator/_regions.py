"""Regions: each call is answered in the region of its signature, as AWS does.

A flow definition lives in the region its ARN names, and a human loop can only start on a
flow definition of the call's own region: StartHumanLoop (ValidationException), Textract
AnalyzeDocument and Rekognition DetectModerationLabels (InvalidParameterException) refuse
any other, naming both regions.  Likewise Textract and Rekognition read their input from
S3 in the call's region only; an input whose bucket the emulator's S3 holds in another
region is refused the way those services refuse an object they cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ._errors import Dialect

#: regions of the ARNs seen (a few flow definitions, looked up on every start)
_REGIONS: dict[str, str] = {}
_REGIONS_MAX: Final = 4096


def of_arn(arn: str) -> str:
    """The region field of an ARN (``arn:partition:service:REGION:account:resource``)."""
    try:
        return _REGIONS[arn]
    except KeyError:
        pass
    parts = arn.split(":", 4)
    region = parts[3] if len(parts) > 4 else ""
    if len(_REGIONS) >= _REGIONS_MAX:
        _REGIONS.clear()
    _REGIONS[arn] = region
    return region


def mismatch(arn: str, region: str) -> str | None:
    """Why a flow definition cannot serve a call in `region` (None: it can)."""
    flow_region = of_arn(arn)
    if flow_region == region:
        return None
    return (
        f"The flow definition {arn} is in region {flow_region or '(none)'}, but the request "
        f"was sent to region {region}; use a flow definition of region {region}."
    )


def check_flow(dialect: Dialect, arn: str, region: str) -> None:
    """Refuse a flow definition of another region than the call's."""
    if of_arn(arn) != region:
        raise dialect.invalid(mismatch(arn, region) or "")


def check_bucket(
    dialect: Dialect,
    s3_object: dict[str, str] | None,
    region: str,
    bucket_region: Callable[[str], str | None],
) -> None:
    """Refuse an S3 input whose bucket exists in another region than the call's.

    A bucket the emulator's S3 does not hold is a virtual input and always readable.
    """
    if s3_object is None:
        return
    where = bucket_region(s3_object["Bucket"])
    if where is not None and where != region:
        raise dialect.unreadable_s3_object()
