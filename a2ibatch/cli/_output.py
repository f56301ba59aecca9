"""What the command prints, and where: text for a person on a terminal, JSON for anything else.

* stdout on a terminal: plain text, at the terminal's width, never wrapped by us (a long ARN
  or command stays one line the terminal can copy), no markup interpreted, colour only for
  our own labels;
* stdout anywhere else (a pipe, a file, CI), or with ``--json``: JSON only, one object per
  line;
* stderr: progress and logs (JSON lines off a terminal), and errors.

Every piece of text that came from outside (ids, paths, messages) goes through
`a2ibatch._text.printable` first: control characters and reordering marks are escaped, and
rich never parses it as markup.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.text import Text

from .. import printable


def _json(data: Any) -> str:
    return printable(orjson.dumps(data, default=str).decode(), json=True)


class Output:
    """stdout for one command: `json` when asked or when stdout is not a terminal."""

    def __init__(
        self, *, json: bool = False, text: bool = False, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        #: JSON objects, not text: asked for, or stdout is not a terminal (unless `text`)
        self.json = json or (not text and not self.stream.isatty())
        self._console = Console(
            file=self.stream, highlight=False, markup=False, emoji=False, soft_wrap=True
        )

    def record(self, data: Mapping[str, Any]) -> None:
        """One JSON object on its own line (JSON mode only)."""
        self.stream.write(_json(data) + "\n")
        self.stream.flush()

    def line(self, *parts: str | tuple[str, str]) -> None:
        """One line of text; a part is outside text (escaped) or (our text, its style)."""
        text = Text()
        for part in parts:
            if isinstance(part, tuple):
                text.append(part[0], style=part[1])
            else:
                text.append(printable(part))
        self._console.print(text)

    def pairs(self, rows: Iterable[tuple[str, Any]], indent: int = 2) -> None:
        """Aligned ``label  value`` lines (values are outside text)."""
        rows = list(rows)
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            self.line(" " * indent, (label.ljust(width), "bold"), "  ", str(value))


def error_console() -> Console:
    return Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def print_error(message: str, *, code: str | None, exit_code: int, json: bool) -> None:
    """The one line an error ends in (stderr): text, or a JSON line off a terminal."""
    if json:
        record = {"event": "error", "message": message, "code": code, "exit_code": exit_code}
        sys.stderr.write(_json(record) + "\n")
        return
    text = Text()
    text.append("a2ibatch: ", style="bold red")
    text.append(printable(message))
    error_console().print(text)
