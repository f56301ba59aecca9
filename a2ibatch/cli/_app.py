"""The `a2ibatch` command: parse flags, call the library's public API, print, pick an exit code.

No input, however broken, produces a traceback: every error ends in one message, which names
the flags to change (the library's errors name its parameters; `spell` turns those into this
command's flags).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from .. import A2IBatchError, ConfigError, __version__
from . import _lifecycle_cmds, _status, _submit
from ._args import add_aws, add_logging
from ._help import DEMO_EXAMPLES, EXIT_CODES, Formatter, epilog
from ._logging import json_logs
from ._output import print_error

EXIT_INTERRUPTED = 130


def build_parser(*, emulate_flags: bool = True) -> argparse.ArgumentParser:
    """The command line's parser.

    `emulate_flags` False leaves the ``emulate`` command without its flags, which live in
    the emulator package: importing it (aiohttp's web server, which sets up TLS at import)
    is a third of the start-up of every other command, a dry run's included.
    """
    parser = argparse.ArgumentParser(
        prog="a2ibatch",
        description="Submit Amazon A2I human loops in bulk, exactly once per item, at the "
        "account's quota; then track them, collect the answers and clean up.",
        epilog=epilog(
            "start here: a2ibatch demo   (a whole job on the built-in emulator)", EXIT_CODES
        ),
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"a2ibatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _submit.add_command(sub)
    _status.add_command(sub)
    _lifecycle_cmds.add_commands(sub)

    p = sub.add_parser(
        "emulate",
        help="run the local AWS emulator (A2I, Textract, Rekognition, SageMaker, S3)",
        description="Serve the AWS APIs a2ibatch calls on one local endpoint, with quotas, "
        "latency, faults and loops that complete, to rehearse a job at no cost.",
        formatter_class=Formatter,
    )
    if emulate_flags:
        from ..emulator import add_arguments

        add_arguments(p)
    p.set_defaults(func=_cmd_emulate)

    p = sub.add_parser(
        "demo",
        help="a whole job on the built-in emulator: submit, track, results",
        description="Start the emulator in a child process, write a manifest of a few "
        "thousand items, submit them (progress bar and summary), track the loops until the "
        "emulated reviewers finish, and write their answers: the whole walk, at no cost.",
        epilog=epilog(DEMO_EXAMPLES, EXIT_CODES),
        formatter_class=Formatter,
    )
    p.add_argument("--items", type=int, default=3000, help="items in the manifest (default 3000)")
    p.add_argument(
        "--task",
        choices=("custom", "textract", "rekognition"),
        default="custom",
        help="the task type (default custom)",
    )
    p.add_argument(
        "--out",
        default="demo-out",
        help="folder for the manifest, ledger and answers (default demo-out)",
    )
    p.add_argument(
        "--no-walk",
        dest="walk",
        action="store_false",
        help="submit only; skip tracking and results",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logging(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def spelling(parser: argparse.ArgumentParser) -> Callable[[str, str | None], str]:
    """How this command line spells a setting an error message names (its flag)."""
    flags: dict[str, argparse.Action] = {}
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.option_strings and action.dest not in flags:
                flags[action.dest] = action
    aliases = {"max_failure_ratio": "max_failures", "list_states": "list_states"}

    def spell(name: str, value: str | None) -> str:
        action = flags.get(aliases.get(name, name))
        if action is None:
            env = f"A2IBATCH_{name.upper()}"
            return f"{name} (in the config file, or {env})"
        option = max(action.option_strings, key=len)
        if action.nargs == 0 or value is None:
            if isinstance(action, argparse._StoreFalseAction) and value == "True":
                return f"no {option}"
            return option
        return f"{option} {value.strip(chr(39))}"

    return spell


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only a command line with a word that could name the emulate command (in full, or
    # abbreviated where argparse allows it) can run it; any other leaves the emulator
    # unimported.  A word that merely looks like one costs an import, nothing else.
    emulate = any(word and "emulate".startswith(word) for word in argv)
    parser = build_parser(emulate_flags=emulate)
    args = parser.parse_args(argv)
    as_json = json_logs(getattr(args, "log_format", None))
    try:
        code: int = args.func(args)
        return code
    except A2IBatchError as exc:
        report(exc, parser, as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:  # the library unwraps its groups; just in case
        inner = _first_leaf(group)
        if isinstance(inner, A2IBatchError):
            report(inner, parser, as_json)
            return inner.exit_code
        return _internal(inner, as_json)
    except Exception as exc:  # a bug of ours: one line, never a traceback for the user
        return _internal(exc, as_json)


def report(exc: A2IBatchError, parser: argparse.ArgumentParser, as_json: bool) -> None:
    print_error(exc.render(spelling(parser)), code=exc.code, exit_code=exc.exit_code, json=as_json)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []
    todo: list[BaseException] = [group]
    while todo:
        exc = todo.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            todo[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    ours = [exc for exc in leaves if isinstance(exc, A2IBatchError)]
    return (ours or leaves)[0]


def _internal(exc: BaseException, as_json: bool) -> int:
    if os.environ.get("A2IBATCH_DEBUG"):
        traceback.print_exception(exc)
    print_error(
        f"internal error ({type(exc).__name__}) in a2ibatch {__version__}; the ledger is "
        "consistent and the same command resumes; set A2IBATCH_DEBUG=1 for details and "
        "report it",
        code="InternalError",
        exit_code=3,
        json=as_json,
    )
    return 3


def _cmd_emulate(args: argparse.Namespace) -> int:
    from ..emulator import config_from_args, run

    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return run(config)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args)


__all__ = ["add_aws", "build_parser", "main", "spelling"]
