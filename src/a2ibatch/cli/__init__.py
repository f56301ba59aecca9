"""The a2ibatch command: a thin shell over the library."""

from ._app import main

__all__ = ["main"]
