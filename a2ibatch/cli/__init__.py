"""The a2ibatch command: a thin shell over the library."""

from __future__ import annotations

import sys

from ._app import main as _main


def main() -> int:
    """Console entry point."""
    return _main(sys.argv[1:])


__all__ = ["main"]
