"""Logging for the command line: readable on a terminal, JSON lines otherwise.

botocore (and aiobotocore, which uses its loggers) logs every request's parameters and body
at DEBUG, credentials headers included: those loggers stay at WARNING whatever the level
asked for, so input content and credentials never reach a log.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

QUIET_LOGGERS = ("botocore", "aiobotocore", "boto3", "aioboto3", "urllib3", "aiohttp")


def configure(fmt: Literal["json", "console"] | None, level: str = "info") -> None:
    """Route structlog and stdlib logging to stderr in the chosen (or detected) format."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
