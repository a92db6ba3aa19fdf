"""``bc-sync poll --once [--payments] [--org ID] [--json]``: one expense-import (or, with
``--payments``, payment-import) round now (DESIGN §11).

The long-running poller is the ``poll`` role of ``bc-sync run``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from worker.app import Runtime
from worker.cli.common import ExitCode, add_command, err, format_table, positive
from worker.config.settings import Settings
from worker.log import redact_text
from worker.sync.expenses import PollResult
from worker.sync.payments import PaymentPoller
from worker.sync.poller import ExpensePoller, poll_once

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ORG", "org", 24),
    ("STATUS", "status", 8),
    ("PUBLISHED", "published", 9),
    ("SKIPPED LINES", "skipped_lines", 13),
    ("ALREADY SENT", "already_published", 12),
    ("WATERMARK (UTC)", "watermark", 25),
    ("NOTE", "note", 80),
)
PAYMENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ORG", "org", 24),
    ("STATUS", "status", 8),
    ("PAID", "paid", 5),
    ("UPDATED", "payment_updated", 7),
    ("CHECKED", "checked", 7),
    ("NOT OURS", "not_ours", 8),
    ("BC REQUESTS", "bc_requests", 11),
    ("WATERMARK (UTC)", "watermark", 25),
    ("NOTE", "note", 80),
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``poll`` to the ``bc-sync`` sub-commands."""
    parser = add_command(
        subparsers,
        "poll",
        cmd_poll,
        "import expenses (or, with --payments, payments) from Business Central now",
        description="Run one expense-import round: publish a bc.expense.imported event for "
        "every new purchase invoice line posted on the project dimension. With --payments, "
        "one payment-import round instead: bc.invoice.paid and bc.invoice.payment_updated "
        "for the invoices bc-sync exported. The continuous pollers are the 'poll' role of "
        "'bc-sync run'.",
    )
    parser.add_argument(
        "--once", action="store_true", required=True, help="run one round and exit (required)"
    )
    parser.add_argument(
        "--payments",
        action="store_true",
        help="import payments of exported invoices instead of expenses",
    )
    parser.add_argument(
        "--org", help="only this Moment organization (polled even when paused; import must be on)"
    )
    parser.add_argument("--page-size", type=positive, help=argparse.SUPPRESS)
    return parser


def render(results: Sequence[PollResult], *, as_json: bool, payments: bool = False) -> str:
    """The round's outcome per organization, as a table or as JSON."""
    if as_json:
        return json.dumps({"organizations": [r.to_dict() for r in results]}, indent=2)
    if not results:
        return f"No organization has {'payment' if payments else 'expense'} import switched on."
    rows: list[dict[str, Any]] = []
    for r in results:
        row = r.to_dict()
        row["watermark"] = r.watermark.strftime("%Y-%m-%d %H:%M:%S") if r.watermark else None
        note = ": ".join(p for p in (r.reason, r.message) if p)
        row["note"] = redact_text(note) if note else None
        rows.append(row)
    return format_table(rows, PAYMENT_COLUMNS if payments else COLUMNS)


async def cmd_poll(args: argparse.Namespace, settings: Settings) -> int:
    """Open the runtime (store, broker, BC hub), run one round, print it.

    Exit code 0 when every organization was polled or skipped, 1 when one failed or is paused.
    """
    try:
        runtime = await Runtime.open(settings)
    except (ConnectionError, OSError) as exc:
        err(
            args,
            f"cannot reach the broker or the store: {redact_text(str(exc)) or type(exc).__name__}",
        )
        return ExitCode.FAILED
    try:
        part = PaymentPoller if args.payments else ExpensePoller
        results = await poll_once(runtime, args.org, page_size=args.page_size, part=part)
    finally:
        await runtime.stop()
    print(render(results, as_json=args.json, payments=args.payments))
    failed = any(r.status in ("failed", "paused") for r in results)
    return ExitCode.FAILED if failed else ExitCode.OK
