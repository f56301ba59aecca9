"""Regions of a job: its flow definitions (at most one per region), and region names.

A2I runs a human loop in the region of its flow definition; Textract and Rekognition read a
document or image only from a bucket of the region they are called in, and quotas are per
region.  A job has one flow definition (every item goes to it, as always) or several, one per
region: each item then goes to the flow of its region (see `_routes`).

`flow_list` checks and normalises the ``flow_definition_arn`` setting (a string, or a
sequence of strings); `flows_by_region` maps each region to its flow.  Both refuse two flow
definitions of one region: the region decides where an item goes, so it must name one flow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from ._errors import ConfigError, setting

#: an AWS region name: us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4 ...
REGION_NAME: Final = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
#: what S3's GetBucketLocation answers for the regions it names otherwise (a bucket of
#: us-east-1 has no location constraint; "EU" is the old name of eu-west-1)
_LOCATIONS: Final = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}
_ARN_SHAPE: Final = "arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME"


def arn_region(arn: str) -> str:
    """The region field of an ARN (``arn:partition:service:REGION:...``); "" if none."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""


def bucket_region(constraint: object) -> str:
    """The region of a bucket from GetBucketLocation's ``LocationConstraint``."""
    if constraint is None or constraint in _LOCATIONS:
        return _LOCATIONS[constraint]
    return str(constraint)


def flow_list(value: object) -> tuple[str, ...]:
    """The job's flow definition ARNs: one string, or a sequence of them (repeats of one
    ARN count once).  ConfigError for anything else, and for two flows of one region."""
    if isinstance(value, str):
        arns: tuple[object, ...] = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        arns = tuple(dict.fromkeys(value))
    else:
        arns = (value,)
    if not arns or not all(isinstance(a, str) and ":flow-definition/" in a for a in arns):
        raise ConfigError(
            f"{setting('flow_definition_arn')} must be a flow definition ARN ({_ARN_SHAPE}), "
            "or a list of them, one per region"
        )
    found = tuple(str(a) for a in arns)
    if len(found) > 1:
        flows_by_region(found)
    return found


def flows_by_region(arns: Iterable[str]) -> dict[str, str]:
    """Region -> flow definition ARN; ConfigError when two ARNs name one region (or one
    of several names none)."""
    flows: dict[str, str] = {}
    for arn in arns:
        region = arn_region(arn)
        if not region:
            raise ConfigError(
                f"{setting('flow_definition_arn')} {arn!r} names no region ({_ARN_SHAPE}): "
                "with several flow definitions, each item goes to the one of its region"
            )
        other = flows.get(region)
        if other is not None and other != arn:
            raise ConfigError(
                f"two flow definitions of region {region}: {other} and {arn}; give "
                f"{setting('flow_definition_arn')} at most once per region (an item goes to "
                "the flow definition of its region)"
            )
        flows[region] = arn
    return flows


def listing(regions: Iterable[str]) -> str:
    """Regions for a message: ``us-east-1, eu-west-1``."""
    return ", ".join(sorted(regions))
