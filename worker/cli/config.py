"""``bc-sync config get|put|delete ORG`` and ``bc-sync verify ORG`` (DESIGN §11).

The same code path as the admin API (:class:`worker.config.service.ConfigService`): a save is
verified against Business Central before it is stored, and audited. ``worker/cli.py`` calls
:func:`register` with its sub-parsers.

Exit codes: 0 done; 1 rejected (field errors, as the API's 422) or no such configuration;
2 bad usage; 3 Business Central could not be reached (the API's 502; try again later).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from worker.bc import BcHub
from worker.config.model import ConfigValidationError, FieldError
from worker.config.service import ConfigService, NotConfigured
from worker.config.settings import Settings
from worker.config.store import Store, StoreError
from worker.config.verify import BcUnreachable

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EPILOG = (
    "exit codes: 0 done, 1 rejected (field errors) or not configured, 2 bad usage, "
    "3 Business Central unreachable (try again later)"
)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (e.g. a bare container uid)
        return "cli:unknown"


def _err(message: str) -> None:
    print(f"bc-sync: {message}", file=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _print_errors(errors: Sequence[FieldError], as_json: bool) -> None:
    if as_json:
        _print_json({"errors": list(errors)})
        return
    for error in errors:
        print(f"{error['field']}: {error['message']} [{error['code']}]", file=sys.stderr)


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[ConfigService]:
    store = Store.from_settings(settings)
    try:
        await store.migrate()
        async with BcHub(settings) as hub:
            yield ConfigService(store, hub)
    finally:
        await store.close()


def _guard(func: Command) -> Command:
    """Expected failures become readable lines on stderr and an exit code."""

    @functools.wraps(func)
    async def wrapper(args: argparse.Namespace, settings: Settings) -> int:
        as_json = bool(getattr(args, "json", False))
        try:
            return await func(args, settings)
        except ConfigValidationError as exc:
            _print_errors(exc.errors, as_json)
            return EXIT_REJECTED
        except NotConfigured as exc:
            _err(str(exc))
            return EXIT_REJECTED
        except BcUnreachable as exc:
            if as_json:
                _print_json(
                    {
                        "error": "bc_unreachable",
                        "message": exc.message,
                        "retry_after": round(exc.retry_after),
                    }
                )
            else:
                _err(exc.message)
            return EXIT_UNREACHABLE
        except StoreError as exc:
            _err(str(exc))
            return EXIT_REJECTED
        except ValueError as exc:  # a malformed organization id
            _err(str(exc))
            return EXIT_USAGE

    return wrapper


async def _read_body(source: str) -> Any:
    """The JSON config from a file, or from stdin for ``-``."""
    if source == "-":
        text = await asyncio.to_thread(sys.stdin.read)
    else:
        try:
            text = await asyncio.to_thread(Path(source).read_text, encoding="utf-8")
        except OSError as exc:
            raise ConfigValidationError(
                [{"field": "body", "code": "unreadable", "message": f"cannot read {source}: {exc}"}]
            ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigValidationError(
            [{"field": "body", "code": "invalid", "message": f"not valid JSON: {exc}"}]
        ) from None


@_guard
async def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    async with _service(settings) as service:
        stored = await service.get(args.org)
    if stored is None:
        raise NotConfigured(args.org)
    _print_json(stored.to_public_dict())
    return EXIT_OK


@_guard
async def cmd_put(args: argparse.Namespace, settings: Settings) -> int:
    body = await _read_body(args.file)
    async with _service(settings) as service:
        status = await service.put(args.org, body, actor=_actor())
    if args.json:
        _print_json({"status": status})
    else:
        print(status)
    return EXIT_OK


@_guard
async def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    async with _service(settings) as service:
        deleted = await service.delete(args.org, actor=_actor())
    if not deleted:
        raise NotConfigured(args.org)
    if args.json:
        _print_json({"status": "Deleted"})
    else:
        print("Deleted")
    return EXIT_OK


@_guard
async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    async with _service(settings) as service:
        facts = await service.verify(args.org)
    if args.json:
        _print_json({"status": "OK", **facts.to_dict()})
    else:
        print(
            f"OK: company '{facts.name}' ({facts.id}), country {facts.country or '-'}, "
            f"local currency {facts.local_currency or '-'}"
        )
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config get|put|delete`` and ``verify`` to the ``bc-sync`` sub-commands."""
    parser = subparsers.add_parser(
        "config",
        help="an organization's Business Central integration",
        description="Read, save or delete the integration configuration of a Moment "
        "organization (the same as the admin API).",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    get = sub.add_parser("get", help="print the configuration (without the secret)", epilog=EPILOG)
    get.add_argument("org", help="Moment organization id")
    get.set_defaults(func=cmd_get)

    put = sub.add_parser(
        "put",
        help="verify against Business Central, then save",
        description="Save the configuration (JSON, the dialog's fields) after verifying it "
        "against Business Central. Leave client_secret out to keep the stored one. Prints "
        "Created or Updated, or the field errors.",
        epilog=EPILOG,
    )
    put.add_argument("org", help="Moment organization id")
    put.add_argument("file", nargs="?", default="-", help="JSON file (default: stdin)")
    put.add_argument("--json", action="store_true", help="print JSON")
    put.set_defaults(func=cmd_put)

    rm = sub.add_parser("delete", help="delete the configuration", epilog=EPILOG)
    rm.add_argument("org", help="Moment organization id")
    rm.add_argument("--json", action="store_true", help="print JSON")
    rm.set_defaults(func=cmd_delete)

    verify = subparsers.add_parser(
        "verify",
        help="verify a saved configuration against Business Central",
        description="Check the saved configuration against Business Central as it is now: "
        "credentials, environment, company, dimensions, posting groups. Prints OK or the "
        "field errors.",
        epilog=EPILOG,
    )
    verify.add_argument("org", help="Moment organization id")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=cmd_verify)
