"""The emulator as a command: flags, and a blocking run until SIGINT or SIGTERM.

Used by ``python -m a2ibatch.emulator`` and by the project's ``a2ibatch emulate``.  The
first line on stdout is always ``listening on http://HOST:PORT``, flushed at once, so a
parent process can read the URL (the port may have been chosen by the system).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ._config import ACCESS, OPERATION_NAMES, SAME_INPUT_REUSE, THROTTLE_CODES, EmulatorConfig
from ._server import serve

_DEFAULTS = EmulatorConfig()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(kind: type[float] | type[int], low: float, high: float = math.inf) -> Any:
    """An argparse type: a number in [low, high], refused with a usage error otherwise."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (low <= value <= high):
            bounds = f"between {low:g} and {high:g}" if high != math.inf else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_RATE = _number(float, 0.0, 1.0)
_SECONDS = _number(float, 0.0)
_CALLS_PER_SECOND = _number(float, 1e-9)


def _operation_quota(text: str) -> tuple[str, float]:
    """``--quota-for OP=N``: an emulated operation and its calls per second."""
    operation, sep, number = text.partition("=")
    if not sep or operation not in OPERATION_NAMES:
        raise argparse.ArgumentTypeError(
            f"expected OPERATION=CALLS_PER_SECOND with one of {', '.join(OPERATION_NAMES)}, "
            f"not {text!r}"
        )
    rate: float = _CALLS_PER_SECOND(number)
    return operation, rate


_operation_quota.__name__ = "OPERATION=N"


#: (config field, type, help) for every plain valued flag, in --help order
_VALUED: tuple[tuple[str, Any, str], ...] = (
    ("host", str, "interface to listen on"),
    ("port", _number(int, 0, 65535), "port (0: any free port)"),
    ("quota", _CALLS_PER_SECOND, "calls per second per operation (default: unlimited)"),
    ("burst", _number(int, 1), "token-bucket capacity per operation"),
    ("network_ms", _SECONDS, "one-way network delay, before admission and before the answer"),
    ("network_jitter_ms", _SECONDS, "each network delay varies uniformly by +/- this much"),
    ("processing_ms", _SECONDS, "service time of an admitted call, after admission"),
    (
        "processing_jitter_ms",
        _SECONDS,
        "processing time varies uniformly by +/- this much",
    ),
    ("activation_rate", _RATE, "share of Textract/Rekognition inputs that start a loop"),
    ("fault_rate", _RATE, "share of calls answered 5xx before doing anything"),
    ("lost_response_rate", _RATE, "share of start calls that take effect, then lose the answer"),
    ("slow_rate", _RATE, "share of start calls that take effect, then answer after --slow-ms"),
    ("slow_ms", _SECONDS, "delay of a slow answer"),
    ("complete_after", _SECONDS, "seconds until an InProgress loop completes (default: never)"),
    ("failure_rate", _RATE, "share of finishing loops that end Failed"),
    ("stopping_seconds", _SECONDS, "how long a stopped loop shows Stopping"),
    ("max_in_progress", _number(int, 0), "cap on InProgress loops (default: none)"),
    ("seed", int, "seed of the random draws (default: unseeded)"),
    ("output_bucket", str, "the flow definitions' S3OutputPath bucket (output.json goes there)"),
    ("account_id", str, "the emulated account"),
    ("region", str, "region of ARNs when a request's signature names none"),
)
#: older spellings still accepted: the processing time was once "the latency"
_FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "processing_ms": ("--latency-ms",),
    "processing_jitter_ms": ("--jitter-ms",),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's flags to `parser` (defaults are `EmulatorConfig`'s)."""
    for name, kind, text in _VALUED:
        default = getattr(_DEFAULTS, name)
        shown = text if default is None else f"{text} (default {default})"
        flags = (_flag(name), *_FLAG_ALIASES.get(name, ()))
        parser.add_argument(*flags, dest=name, type=kind, default=default, help=shown)
    parser.add_argument(
        "--quota-for",
        dest="quotas",
        action="append",
        type=_operation_quota,
        default=[],
        metavar="OPERATION=N",
        help="calls per second of one operation, over --quota (repeatable)",
    )
    parser.add_argument(
        "--same-input-reuse",
        choices=SAME_INPUT_REUSE,
        default=_DEFAULTS.same_input_reuse,
        help="StartHumanLoop with a name in use and the same input: ConflictException, or "
        "the same ARN again (default %(default)s)",
    )
    parser.add_argument(
        "--throttle-code",
        choices=THROTTLE_CODES,
        default=_DEFAULTS.throttle_code,
        help="the throttling error of Textract and Rekognition (default %(default)s)",
    )
    parser.add_argument(
        "--service-quotas-access",
        choices=ACCESS,
        default=_DEFAULTS.service_quotas_access,
        help="deny: Service Quotas answers AccessDeniedException (default %(default)s)",
    )
    parser.add_argument(
        "--no-s3",
        dest="s3",
        action="store_false",
        help="serve no S3 (and write no output.json); S3 calls get NotImplemented",
    )
    parser.add_argument(
        "--not-a2i-customer",
        action="store_true",
        help="refuse every human loop: A2I is in maintenance mode for this account",
    )


def config_from_args(ns: argparse.Namespace) -> EmulatorConfig:
    """The `EmulatorConfig` the parsed flags describe (ValueError when they are wrong)."""
    values = {name: getattr(ns, name) for name, _, _ in _VALUED}
    return EmulatorConfig(
        **values,
        quotas=dict(ns.quotas),
        service_quotas_access=ns.service_quotas_access,
        s3=bool(ns.s3),
        same_input_reuse=ns.same_input_reuse,
        throttle_code=ns.throttle_code,
        not_a2i_customer=bool(ns.not_a2i_customer),
    )


def to_args(config: EmulatorConfig) -> list[str]:
    """The flags that reproduce `config` (only the ones that differ from the defaults)."""
    args: list[str] = []
    for name, _, _ in _VALUED:
        value = getattr(config, name)
        if value != getattr(_DEFAULTS, name):
            args += [_flag(name), repr(value) if isinstance(value, float) else str(value)]
    for operation, rate in config.quotas.items():
        args += ["--quota-for", f"{operation}={rate!r}"]
    if config.service_quotas_access != _DEFAULTS.service_quotas_access:
        args += ["--service-quotas-access", config.service_quotas_access]
    if not config.s3:
        args.append("--no-s3")
    if config.same_input_reuse != _DEFAULTS.same_input_reuse:
        args += ["--same-input-reuse", config.same_input_reuse]
    if config.throttle_code != _DEFAULTS.throttle_code:
        args += ["--throttle-code", config.throttle_code]
    if config.not_a2i_customer:
        args.append("--not-a2i-customer")
    return args


def run(config: EmulatorConfig) -> int:
    """Serve until SIGINT or SIGTERM; print the URL first.

    Returns the exit code: 0 after a clean stop, 1 when the address cannot be bound.
    """
    try:
        return asyncio.run(_run(config))
    except OSError as exc:
        sys.stderr.write(f"emulator: cannot listen on {config.host}:{config.port}: {exc}\n")
        return 1


async def _run(config: EmulatorConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serve(config) as emulator:
            sys.stdout.write(f"listening on {emulator.url}\n")
            sys.stdout.flush()
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m a2ibatch.emulator [flags]``."""
    parser = argparse.ArgumentParser(
        prog="python -m a2ibatch.emulator",
        description="Local emulator of A2I runtime, Textract, Rekognition, SageMaker "
        "(DescribeFlowDefinition), Service Quotas and S3 on one endpoint.",
    )
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        config = config_from_args(ns)
    except ValueError as exc:
        parser.error(str(exc))
    return run(config)
