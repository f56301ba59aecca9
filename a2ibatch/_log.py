"""The library's logging: stdlib `logging` under the ``a2ibatch`` logger, silent until the
application configures logging.

Events are structured (an event name and fields, through structlog's stdlib integration), so
an application that renders with structlog sees the fields, and one that uses plain
`logging` sees a readable line (``quota_pause seconds=30.0``).  The logger has a
`logging.NullHandler`, as the logging HOWTO asks of libraries: with no configuration at all,
nothing is printed, not even warnings.  Nothing here depends on structlog's global
configuration, which belongs to the application.

Events never carry input content or credentials: fields are counts, codes, loop names and
settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

LOGGER_NAME = "a2ibatch"
#: the record attribute holding an event's fields (the CLI's formatter renders them)
FIELDS_ATTRIBUTE = "a2ibatch_event"

_stdlib = logging.getLogger(LOGGER_NAME)
_stdlib.addHandler(logging.NullHandler())


def _to_stdlib(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: one stdlib record, readable as text, with the fields attached."""
    fields = dict(event_dict)
    event = str(fields.get("event", ""))
    text = " ".join([event, *(f"{k}={v}" for k, v in fields.items() if k != "event")])
    return (text.replace("%", "%%"),), {"extra": {FIELDS_ATTRIBUTE: fields}}


def get_logger(name: str = LOGGER_NAME) -> Any:
    """A structlog logger that writes to the stdlib logger `name` (a child of ``a2ibatch``)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, _to_stdlib],
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def event_fields(record: logging.LogRecord) -> Mapping[str, Any] | None:
    """The structured fields of a record a2ibatch logged (None for other records)."""
    fields = getattr(record, FIELDS_ATTRIBUTE, None)
    return fields if isinstance(fields, Mapping) else None
