"""``python -m a2ibatch.emulator [flags]``: run the emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
