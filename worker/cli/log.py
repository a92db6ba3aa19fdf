"""``bc-sync log ORG [--type --state --number --since --limit] [--json]``: the integration log
(DESIGN §11), the same answer as ``GET …/business-central/objects``.

A table by default, newest change first; with ``--number`` each matching object's steps follow
the table. ``worker/cli/main.py`` calls :func:`register` with its sub-parsers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.cli.common import add_command, format_table
from worker.config.settings import Settings
from worker.log import redact_text
from worker.ops.integration_log import IntegrationLog, LogFilterError, parse_filters
from worker.store import Store, StoreError
from worker.sync.ledger import OBJECT_TYPES, PAGE_MAX, STATES

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("UPDATED (UTC)", "updated", 19),
    ("TYPE", "object_type", 11),
    ("NUMBER", "moment_number", 20),
    ("STATE", "state", 8),
    ("BC NUMBER", "bc_number", 20),
    ("ATTEMPTS", "attempts", 8),
    ("ERROR", "error", 100),
)
STEP_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("AT (UTC)", "at", 23),
    ("STEP", "step", 24),
    ("ATTEMPT", "attempt", 7),
    ("CODE", "code", 28),
    ("DETAIL", "detail", 100),
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``log`` to the ``bc-sync`` sub-commands."""
    parser = add_command(
        subparsers,
        "log",
        cmd_log,
        "the integration log: each Moment object's state in Business Central",
        description="Where each Moment object of an organization stands in Business Central "
        "(pending, retrying, synced, failed, skipped, waiting), newest change first. With "
        "--number, each match's steps are listed too.",
        org=True,
    )
    parser.add_argument("--type", choices=OBJECT_TYPES, help="only this object type")
    parser.add_argument("--state", choices=STATES, help="only objects in this state")
    parser.add_argument("--number", help="only this Moment number (or Moment id)")
    parser.add_argument("--since", help="changed since: ISO date/time or relative (30m, 2h, 7d)")
    parser.add_argument(
        "--limit", type=int, default=50, help=f"at most this many objects (1-{PAGE_MAX})"
    )
    return parser


def _when(value: str | None) -> str | None:
    return value[:19].replace("T", " ") if value else None


def render(answer: dict[str, Any], details: list[dict[str, Any]]) -> str:
    """The table, then the steps of each object in ``details``."""
    objects = answer["objects"]
    if not objects:
        return f"No objects match in organization {answer['organization']}."
    rows = []
    for o in objects:
        error = o["error"]
        rows.append(
            {
                **o,
                "updated": _when(o["updated_at"]),
                "moment_number": o["moment_number"] or o["moment_id"],
                "error": f"{error['code']}: {error['message']}" if error else None,
            }
        )
    parts = [format_table(rows, COLUMNS)]
    if answer["next_cursor"]:
        parts.append("(more: raise --limit or narrow the filters)")
    for d in details:
        steps = [{**s, "at": (s["at"] or "")[:23].replace("T", " ")} for s in d["history"]]
        title = f"\n{d['object_type']} {d['moment_number'] or d['moment_id']} ({d['state']})"
        parts.append(title + "\n" + format_table(steps, STEP_COLUMNS))
    return "\n".join(parts)


async def cmd_log(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 with the log, 2 on a bad filter, 1 when the store cannot be read."""
    try:
        filters = parse_filters(
            type=args.type,
            state=args.state,
            number=args.number,
            since=args.since,
            limit=args.limit,
        )
    except LogFilterError as exc:
        print(f"bc-sync log: --{exc.field}: {exc.message}", file=sys.stderr)
        return 2
    store = Store.from_settings(settings)
    try:
        await store.migrate()
        log = IntegrationLog(store)
        answer = await log.objects(args.org, filters)
        details: list[dict[str, Any]] = []
        if args.number:
            for o in answer["objects"][:10]:
                found = await log.object(args.org, o["object_type"], o["moment_id"])
                if found is not None:
                    details.append(found)
    except (StoreError, OSError) as exc:
        print(f"bc-sync log: cannot read the store: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed organization id
        print(f"bc-sync log: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    if args.json:
        if args.number:
            by_key = {(d["object_type"], d["moment_id"]): d for d in details}
            answer["objects"] = [
                by_key.get((o["object_type"], o["moment_id"]), o) for o in answer["objects"]
            ]
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print(render(answer, details))
    return 0
