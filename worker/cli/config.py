"""``bc-sync config get|put|delete ORG`` and ``bc-sync verify ORG`` (DESIGN §11).

The same code path as the admin API (:class:`worker.setup.service.ConfigService`): a save is
verified against Business Central before it is stored, and audited.

Exit codes (:class:`~worker.cli.common.ExitCode`): 0 done; 1 rejected (field errors, as the
API's 422) or no such configuration; 2 bad usage; 3 Business Central could not be reached (the
API's 502; try again later).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from worker.app import bc_hub
from worker.cli.common import ExitCode, actor, add_command, guard, print_json
from worker.config.model import ConfigValidationError
from worker.config.settings import Settings
from worker.setup.service import ConfigService, NotConfigured
from worker.store import Store

EPILOG = (
    "exit codes: 0 done, 1 rejected (field errors) or not configured, 2 bad usage, "
    "3 Business Central unreachable (try again later)"
)


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[ConfigService]:
    store = Store.from_settings(settings)
    try:
        await store.migrate()
        async with bc_hub(settings) as hub:
            yield ConfigService(store, hub)
    finally:
        await store.close()


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


@guard
async def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    async with _service(settings) as service:
        stored = await service.get(args.org)
    if stored is None:
        raise NotConfigured(args.org)
    print_json(stored.to_public_dict())
    return ExitCode.OK


@guard
async def cmd_put(args: argparse.Namespace, settings: Settings) -> int:
    body = await _read_body(args.file)
    async with _service(settings) as service:
        status = await service.put(args.org, body, actor=actor())
    if args.json:
        print_json({"status": status})
    else:
        print(status)
    return ExitCode.OK


@guard
async def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    async with _service(settings) as service:
        deleted = await service.delete(args.org, actor=actor())
    if not deleted:
        raise NotConfigured(args.org)
    if args.json:
        print_json({"status": "Deleted"})
    else:
        print("Deleted")
    return ExitCode.OK


@guard
async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    async with _service(settings) as service:
        facts = await service.verify(args.org)
    if args.json:
        print_json({"status": "OK", **facts.to_dict()})
    else:
        print(
            f"OK: company '{facts.name}' ({facts.id}), country {facts.country or '-'}, "
            f"local currency {facts.local_currency or '-'}"
        )
    return ExitCode.OK


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
    add_command(
        sub,
        "get",
        cmd_get,
        "print the configuration (without the secret)",
        epilog=EPILOG,
        org=True,
        json_flag=False,
    )
    put = add_command(
        sub,
        "put",
        cmd_put,
        "verify against Business Central, then save",
        description="Save the configuration (JSON, the dialog's fields) after verifying it "
        "against Business Central. Leave client_secret out to keep the stored one. Prints "
        "Created or Updated, or the field errors.",
        epilog=EPILOG,
        org=True,
    )
    put.add_argument("file", nargs="?", default="-", help="JSON file (default: stdin)")
    add_command(sub, "delete", cmd_delete, "delete the configuration", epilog=EPILOG, org=True)
    add_command(
        subparsers,
        "verify",
        cmd_verify,
        "verify a saved configuration against Business Central",
        description="Check the saved configuration against Business Central as it is now: "
        "credentials, environment, company, dimensions, posting groups. Prints OK or the "
        "field errors.",
        epilog=EPILOG,
        org=True,
    )
