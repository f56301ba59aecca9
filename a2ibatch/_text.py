"""Text from outside (ids, paths, service messages, URLs) made safe to show.

Ids, file names and ledger values are the user's data, and sometimes hostile: an id may hold
terminal escape sequences (``ESC [2J`` clears the screen), a bell, or a bidirectional
override that makes a line read differently from what it says.  `printable` escapes every
such character, so whatever reaches a terminal or a log is exactly what was there, shown as
text.  `redact_url` removes the user-info part of a URL (``user:SECRET@``) before a URL
appears in a message.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidirectional embeddings, overrides and isolates; zero-width characters; line and
# paragraph separators).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
_UNSAFE_WITH_NEWLINES = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape_json(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: object, *, newlines: bool = False, json: bool = False) -> str:
    """`text` with control and reordering characters escaped (``\\x1b``, ``\\u202e``).

    Tabs and, with `newlines`, line breaks are kept; everything else unsafe is escaped.
    With `json`, `text` is JSON already and they become JSON escapes (``\\u202e``), so the
    JSON still means exactly what it meant, and shows nothing a terminal would act on.
    """
    value = str(text)
    if json:
        return _UNSAFE_WITH_NEWLINES.sub(_escape_json, value)
    pattern = _UNSAFE if newlines else _UNSAFE_WITH_NEWLINES
    if newlines:
        return pattern.sub(_escape, value)
    return pattern.sub(_escape, value.replace("\t", " "))


def redact_url(url: str) -> str:
    """`url` without its user-info (``http://user:pw@host/`` -> ``http://***@host/``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))
