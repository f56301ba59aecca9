"""Flag groups shared by several commands."""

from __future__ import annotations

import argparse


def add_aws(p: argparse.ArgumentParser) -> None:
    """Where to send calls; credentials always come from the AWS chain."""
    g = p.add_argument_group("AWS (default: the standard AWS chain)")
    g.add_argument("--endpoint-url", help="service endpoint, e.g. the emulator's URL")
    g.add_argument("--region", help="AWS region (default: AWS_REGION / profile)")
    g.add_argument("--profile", help="AWS profile (default: AWS_PROFILE)")
    g.add_argument(
        "--allow-insecure-endpoint",
        action="store_true",
        default=None,
        help="allow a plain-http endpoint that is not a loopback address",
    )


def add_logging(p: argparse.ArgumentParser, *, level: str = "info") -> None:
    p.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="default: console on a terminal, else json",
    )
    p.add_argument("--log-level", default=level, choices=("debug", "info", "warning", "error"))
