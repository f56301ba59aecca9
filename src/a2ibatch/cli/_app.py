"""Command-line entry point (commands are added as the library grows)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("a2ibatch: no commands yet", file=sys.stderr)
    return 2
