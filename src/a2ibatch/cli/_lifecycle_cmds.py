"""Commands for after submit: track, results, stop, delete, reconcile."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register the lifecycle subcommands on the main parser's subparsers."""
    del sub


__all__ = ["add_commands", "argparse"]
