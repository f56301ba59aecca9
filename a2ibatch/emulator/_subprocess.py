"""The emulator in a child process, so that its CPU is not the benchmarked client's.

A plain (synchronous) context manager: it blocks only while the child starts, so async
code may use it too.  The URL comes from the child's first stdout line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from ._cli import to_args
from ._config import EmulatorConfig

READY_PREFIX: Final = "listening on "
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0


class EmulatorStartError(RuntimeError):
    """The child process exited or stayed silent instead of announcing its URL."""


@contextmanager
def run_subprocess(
    config: EmulatorConfig | None = None, *, python: str | None = None
) -> Iterator[str]:
    """Run ``python -m a2ibatch.emulator`` with `config`'s flags; yields its URL.

    On exit the child gets SIGTERM (then SIGKILL if it has not stopped within 10 s).
    """
    command = [
        python or sys.executable,
        "-m",
        "a2ibatch.emulator",
        *to_args(config or EmulatorConfig()),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = _read_url(process)
        yield url
    finally:
        _stop(process)


def _read_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(START_TIMEOUT)
    first = line[0].strip() if line else ""
    if not first.startswith(READY_PREFIX):
        code = process.poll()
        state = f"exited with {code}" if code is not None else "did not answer in time"
        raise EmulatorStartError(f"the emulator {state}; first line: {first!r}")
    return first[len(READY_PREFIX) :]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
