"""What every ``bc-sync`` command shares: the command type, exit codes, the guard that turns
expected failures into one readable line, and small printing helpers."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from enum import IntEnum
from typing import Any

from worker.config.model import ConfigValidationError, FieldError
from worker.config.settings import Settings
from worker.log import redact_text
from worker.ops.dlq import DlqError, FilterError
from worker.setup.service import NotConfigured
from worker.setup.verify import BcUnreachable
from worker.store import StoreError

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


class ExitCode(IntEnum):
    """The exit codes of every command (``--help`` epilogs name them)."""

    OK = 0
    FAILED = 1  # rejected (field errors), not configured, an operation failed, broker unreachable
    USAGE = 2  # bad arguments or settings
    UNREACHABLE = 3  # Business Central could not be reached (the API's 502): try again later
    INTERRUPTED = 130  # Ctrl-C


def err(args: argparse.Namespace, message: str) -> None:
    """One line on stderr, prefixed with the command (``bc-sync dlq: …``)."""
    command = getattr(args, "command", None)
    print(f"bc-sync {command}: {message}" if command else f"bc-sync: {message}", file=sys.stderr)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def actor() -> str:
    """Who ran the command, for audit lines: ``cli:<user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (e.g. a bare container uid)
        return "cli:unknown"


def positive(value: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def print_field_errors(errors: Sequence[FieldError], as_json: bool) -> None:
    if as_json:
        print_json({"errors": list(errors)})
        return
    for error in errors:
        print(f"{error['field']}: {error['message']} [{error['code']}]", file=sys.stderr)


def guard(func: Command) -> Command:
    """Expected failures become readable lines on stderr (or JSON) and an :class:`ExitCode`."""

    @functools.wraps(func)
    async def wrapper(args: argparse.Namespace, settings: Settings) -> int:
        as_json = bool(getattr(args, "json", False))
        try:
            return await func(args, settings)
        except ConfigValidationError as exc:
            print_field_errors(exc.errors, as_json)
            return ExitCode.FAILED
        except FilterError as exc:
            err(args, f"--{exc.field.replace('_', '-')}: {exc.message}")
            return ExitCode.USAGE
        except BcUnreachable as exc:
            if as_json:
                print_json(
                    {
                        "error": "bc_unreachable",
                        "message": exc.message,
                        "retry_after": round(exc.retry_after),
                    }
                )
            else:
                err(args, exc.message)
            return ExitCode.UNREACHABLE
        except (NotConfigured, StoreError, DlqError) as exc:
            err(args, str(exc))
            return ExitCode.FAILED
        except ValueError as exc:  # e.g. a malformed organization id
            err(args, str(exc))
            return ExitCode.USAGE
        except (ConnectionError, OSError) as exc:
            # aio-pika's connection errors derive from ConnectionError; never print the URL.
            err(args, f"cannot reach the broker: {redact_text(str(exc)) or type(exc).__name__}")
            return ExitCode.FAILED

    return wrapper


def cell(value: Any) -> str:
    """A value as one table cell (``-`` for none, newlines folded)."""
    if value is None:
        return "-"
    return " ".join(str(value).split())  # one line: messages may hold newlines


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, int]]) -> str:
    """Fixed-width columns: each as wide as its longest cell up to its cap; long cells are cut.

    ``columns`` holds (header, row key, widest the column may get).
    """
    cells = [[cell(row.get(key)) for _, key, _ in columns] for row in rows]
    widths = [
        min(cap, max([len(header), *(len(r[i]) for r in cells)]))
        for i, (header, _, cap) in enumerate(columns)
    ]
    lines = [
        "  ".join(_truncate(c, w).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [[h for h, _, _ in columns], *cells]
    ]
    return "\n".join(lines)


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Command,
    help_: str,
    *,
    description: str | None = None,
    epilog: str | None = None,
    org: bool = False,
    json_flag: bool = True,
) -> argparse.ArgumentParser:
    """A sub-command running ``func``; with the ``ORG`` argument and ``--json`` when asked."""
    parser = subparsers.add_parser(name, help=help_, description=description, epilog=epilog)
    if org:
        parser.add_argument("org", metavar="ORG", help="the Moment organization id")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=func)
    return parser
