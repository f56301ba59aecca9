"""A local emulator of the AWS APIs a2ibatch calls, for tests, benchmarks and demos.

One HTTP endpoint serves the A2I runtime (rest-json), Textract, Rekognition, SageMaker and
Service Quotas (JSON 1.1), and S3 (moto's S3 backend, in process), with regions, rate
quotas, network and processing delays, injected faults, lost and slow answers, and loop
lifecycles that end with an output.json in S3, all set by `EmulatorConfig`.  Paths under
``/_emulator/`` tell what happened (stats, loops, token buckets, accepted calls per
second) and change settings at run time.  See docs/emulator.md.

Stand-alone: nothing here imports the rest of a2ibatch.

    async with serve(EmulatorConfig(quota=100)) as emu:
        client = session.client("sagemaker-a2i-runtime", endpoint_url=emu.url)

    with run_subprocess(EmulatorConfig(processing_ms=20)) as url:
        ...
"""

from __future__ import annotations

from ._cli import add_arguments, config_from_args, run
from ._config import EmulatorConfig, SameInputReuse, ThrottleCode
from ._server import Emulator, serve
from ._subprocess import EmulatorStartError, run_subprocess

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorStartError",
    "SameInputReuse",
    "ThrottleCode",
    "add_arguments",
    "config_from_args",
    "run",
    "run_subprocess",
    "serve",
]
