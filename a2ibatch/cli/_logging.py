"""Logging for the command line: the library's stdlib records, rendered with structlog on stderr.

The library logs through the stdlib logger ``a2ibatch`` (silent until configured); the CLI
attaches one handler to the root logger whose formatter is structlog's `ProcessorFormatter`:
readable lines on a terminal, JSON lines elsewhere.  Records of other libraries go through
the same formatter.

botocore (and aiobotocore, which uses its loggers) logs every request's parameters and body
at DEBUG, credentials headers included: those loggers stay at WARNING whatever the level
asked for, so input content and credentials never reach a log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from .. import printable

QUIET_LOGGERS = (
    "botocore",
    "aiobotocore",
    "boto3",
    "aioboto3",
    "urllib3",
    "aiohttp",
    "werkzeug",  # moto's server, when an emulator runs in the same process
)
_HANDLER_NAME = "a2ibatch-cli"


def _fields(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """An a2ibatch record's own fields in place of its rendered text."""
    record = event_dict.get("_record")
    fields = getattr(record, "a2ibatch_event", None)  # a2ibatch's records carry their fields
    if isinstance(fields, dict):
        keep = {k: v for k, v in event_dict.items() if k.startswith("_")}
        event_dict.clear()
        event_dict.update(fields)
        event_dict.update(keep)
    return event_dict


def _printable(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Every text value escaped for a terminal (a path or an id may hold escape sequences)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and not key.startswith("_"):
            event_dict[key] = printable(value)
    return event_dict


def json_logs(fmt: Literal["json", "console"] | None) -> bool:
    """Whether logs are JSON lines (asked for, or stderr is not a terminal)."""
    return fmt == "json" or (fmt is None and not sys.stderr.isatty())


def configure(fmt: Literal["json", "console"] | None, level: str = "info") -> None:
    """Route every stdlib record to stderr in the chosen (or detected) format."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer: Any
    chain: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_logs(fmt):
        renderer = structlog.processors.JSONRenderer()  # json.dumps: ASCII, escaped
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        chain.append(_printable)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            _fields,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[*chain, renderer],
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
