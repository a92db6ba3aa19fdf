"""``bc-sync reconcile ORG --from DATE --to DATE [--json | --csv FILE]``: Moment's invoices and
credit notes of a period against what Business Central holds (worker/ops/reconcile.py).

The terminal shows the summary first (counts and sums per class and currency), then the rows;
while BC's pages are read, progress goes to stderr when stderr is a terminal. ``--json``
prints the whole report; ``--csv FILE`` writes one line per row (``-`` for stdout) and prints
the summary. Exit code 0 when every document matched, 1 when a row needs a look (or the run
failed), 2 for bad arguments, 3 when BC could not be reached.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from worker.app import bc_hub
from worker.bc import BcError
from worker.cli.common import ExitCode, add_command, err, format_table, guard, print_json
from worker.config.settings import Settings
from worker.log import redact_text
from worker.ops.reconcile import (
    CLASSES,
    CSV_COLUMNS,
    ReconcileError,
    Reconciler,
    Report,
    csv_row,
    parse_period,
)
from worker.store import ConfigCache, Store

ROW_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("CLASS", "class", 16),
    ("TYPE", "type", 11),
    ("MOMENT NO", "moment_number", 20),
    ("BC NO", "bc", 30),
    ("CUR", "currency_code", 4),
    ("MOMENT EXCL", "moment_total_excluding_tax", 14),
    ("BC EXCL", "bc_total_excluding_tax", 14),
    ("MOMENT INCL", "moment_total_including_tax", 14),
    ("BC INCL", "bc_total_including_tax", 14),
    ("CUSTOMER", "customer", 24),
    ("NOTE", "note", 80),
)
SUMMARY_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("CLASS", "class", 16),
    ("COUNT", "count", 6),
    ("INVOICES", "invoices", 8),
    ("CREDIT NOTES", "credit_notes", 12),
    ("CUR", "currency", 4),
    ("NET EXCL TAX", "excl", 16),
    ("NET INCL TAX", "incl", 16),
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``reconcile`` to the ``bc-sync`` sub-commands."""
    parser = add_command(
        subparsers,
        "reconcile",
        cmd_reconcile,
        "compare a period's invoices and credit notes in Moment with Business Central",
        description="Every invoice and credit note Moment sent in the period (by document "
        "date) against BC's posted sales invoices and credit memos: missing_in_bc, "
        "duplicated_in_bc, different, unknown_in_bc, matched. Read-only in Business Central.",
        epilog="Exit codes: 0 everything matched, 1 a row needs a look (or the run failed), "
        "2 bad arguments, 3 Business Central could not be reached.",
        org=True,
        json_flag=False,  # --json and --csv exclude each other
    )
    parser.add_argument("--from", dest="from_date", required=True, help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="to_date", required=True, help="last day (YYYY-MM-DD)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the whole report as JSON")
    out.add_argument("--csv", metavar="FILE", help="write the rows as CSV (- for stdout)")
    parser.add_argument("--page-size", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def render_summary(report: Mapping[str, Any]) -> str:
    """The ten-second view of a report (``Report.to_dict()``, or the API's answer): one line
    per class and currency."""
    summary = report["summary"]
    lines = [
        f"Reconciliation of {report['organization']} ({report['company']}) "
        f"{report['from']} .. {report['to']}: "
        f"{len(report['rows'])} rows, {report['bc_documents_read']} BC documents read in "
        f"{report['bc_requests']} BC requests"
    ]
    rows: list[dict[str, Any]] = []
    for cls in CLASSES:
        part = summary[cls]
        if not part["currencies"]:
            rows.append({"class": cls, "count": 0})
        for code, c in part["currencies"].items():
            rows.append(
                {
                    "class": cls,
                    "count": c["count"],
                    "invoices": c["invoices"],
                    "credit_notes": c["credit_notes"],
                    "currency": code,
                    "excl": c["total_excluding_tax"],
                    "incl": c["total_including_tax"],
                }
            )
    lines.append(format_table(rows, SUMMARY_COLUMNS))
    return "\n".join(lines)


def _note(row: dict[str, Any]) -> str | None:
    if row["class"] == "missing_in_bc":
        error = row["ledger_error_code"]
        state = f"ledger: {row['ledger_state']}"
        return f"{state}, {error}: {row['ledger_error_message']}" if error else state
    if row["class"] == "different":
        return "differs: " + ", ".join(row["differences"])
    if row["class"] == "duplicated_in_bc":
        return f"{len(row['bc_numbers'])} BC documents"
    return None


def render_rows(report: Report) -> str:
    rows = []
    for r in (row.to_dict() for row in report.rows):
        customers = {r["moment_customer_number"], *r["bc_customer_numbers"]} - {None}
        note = _note(r)
        rows.append(
            {
                **r,
                "bc": ", ".join(r["bc_numbers"]) or None,
                "customer": ", ".join(sorted(customers)) or None,
                "note": redact_text(note) if note else None,
            }
        )
    return format_table(rows, ROW_COLUMNS) if rows else "No invoices or credit notes in the period."


def write_csv(report: Report, out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow(csv_row(row.to_dict()))


def _progress(stream: TextIO) -> Any:
    if not stream.isatty():
        return None

    def show(what: str, documents: int, requests: int) -> None:
        stream.write(
            f"\rreading Business Central: {documents} documents, {requests} requests ({what})   "
        )
        stream.flush()

    return show


def needs_a_look(report: Report) -> bool:
    return any(r.cls != "matched" for r in report.rows)


@guard
async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    try:
        period = parse_period(args.from_date, args.to_date)
    except ReconcileError as exc:
        err(args, f"--{exc.field}: {exc.message}")
        return ExitCode.USAGE
    store = Store.from_settings(settings)
    hub = bc_hub(settings)
    try:
        await store.migrate()
        reconciler = Reconciler.with_hub(
            settings,
            store,
            ConfigCache(store),
            hub,
            **({"page_size": args.page_size} if args.page_size else {}),
        )
        progress = _progress(sys.stderr)
        try:
            report = await reconciler.run(args.org, period, progress=progress)
        finally:
            if progress is not None:
                sys.stderr.write("\n")
    except ReconcileError as exc:
        err(args, exc.message)
        return ExitCode.FAILED
    except BcError as exc:
        err(args, f"Business Central: {redact_text(exc.message or str(exc))}")
        return ExitCode.UNREACHABLE if exc.transient else ExitCode.FAILED
    finally:
        await hub.close()
        await store.close()
    _print(report, args)
    return ExitCode.FAILED if needs_a_look(report) else ExitCode.OK


def _print(report: Report, args: argparse.Namespace) -> None:
    if args.json:
        print_json(report.to_dict())
        return
    if args.csv:
        if args.csv == "-":
            write_csv(report, sys.stdout)
            return
        with open(args.csv, "w", newline="", encoding="utf-8") as out:
            write_csv(report, out)
        print(render_summary(report.to_dict()))
        print(f"{len(report.rows)} rows written to {args.csv}")
        return
    print(render_summary(report.to_dict()))
    print()
    print(render_rows(report))


__all__: Sequence[str] = ("cmd_reconcile", "register")
