"""Flag groups shared by several commands, and the AWS settings they give."""

from __future__ import annotations

import argparse
from typing import Any

from .. import AwsSettings, load_aws_settings


def add_aws(p: argparse.ArgumentParser) -> None:
    """Where to send calls; credentials always come from the AWS chain."""
    g = p.add_argument_group("AWS (default: the standard AWS chain)")
    g.add_argument(
        "--endpoint-url", help="endpoint of every AWS call, e.g. http://127.0.0.1:4566 (emulate)"
    )
    g.add_argument(
        "--s3-endpoint-url",
        help="endpoint of S3 calls (default: AWS_ENDPOINT_URL_S3, else --endpoint-url)",
    )
    g.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    g.add_argument("--profile", help="AWS profile (default: AWS_PROFILE)")
    g.add_argument(
        "--allow-insecure-endpoint",
        action="store_true",
        default=None,
        help="allow a plain-http endpoint that is not a loopback address",
    )


def aws_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "endpoint_url": args.endpoint_url,
        "s3_endpoint_url": args.s3_endpoint_url,
        "region": args.region,
        "profile": args.profile,
        "allow_insecure_endpoint": args.allow_insecure_endpoint,
    }


def aws_settings(args: argparse.Namespace) -> AwsSettings:
    """AWS settings from the flags, then the `A2IBATCH_*` variables, then the config file."""
    return load_aws_settings(aws_flags(args), config_file=getattr(args, "config", None))


def add_logging(p: argparse.ArgumentParser, *, level: str = "info") -> None:
    g = p.add_argument_group("output")
    g.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="logs on stderr (default: console on a terminal, else JSON lines)",
    )
    g.add_argument(
        "--log-level",
        default=level,
        choices=("debug", "info", "warning", "error"),
        help=f"default {level}",
    )
