"""``bc-sync dlq list|show|replay|purge``: the dead-letter commands (DESIGN §9, §11)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from worker.cli.common import (
    ExitCode,
    actor,
    add_command,
    cell,
    err,
    format_table,
    guard,
    positive,
    print_json,
)
from worker.config.settings import Settings
from worker.ops import dlq

# (header, row key, widest the column may get); the last column takes what is left.
LIST_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ID", "id", 36),
    ("ORG", "org", 16),
    ("TYPE", "type", 24),
    ("SUBJECT", "subject", 18),
    ("CODE", "code", 26),
    ("ATT", "attempts", 3),
    ("LAST FAILURE (UTC)", "last_failure", 19),
    ("MESSAGE", "message", 60),
)


def _time_arg(value: str) -> str:
    try:
        dlq.parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all optional; org/type/code accept * globs)")
    group.add_argument("--org", help="Moment organization id")
    group.add_argument("--type", help="event type, e.g. moment.invoice.created")
    group.add_argument("--code", help="error code, e.g. BC-POSTING-GROUP-MISSING")
    group.add_argument(
        "--since",
        type=_time_arg,
        help="last failure at or after: ISO date/time (UTC unless given) or relative (30m, 2h, 7d)",
    )
    group.add_argument("--until", type=_time_arg, help="last failure before (same forms)")
    group.add_argument("--limit", type=positive, help="at most this many (oldest first)")
    group.add_argument(
        "--id", dest="ids", action="append", metavar="ID", help="this dead letter (repeatable)"
    )


def _filters(args: argparse.Namespace) -> dlq.Filters:
    return dlq.Filters.from_fields(vars(args), ids=args.ids, limit=args.limit)


def _table_row(letter: dlq.DeadLetter) -> dict[str, Any]:
    row = letter.row()
    if row["last_failure"]:  # 2026-11-25T22:36:58.768Z → 2026-11-25 22:36:58 (UTC)
        row["last_failure"] = row["last_failure"][:19].replace("T", " ")
    return row


def _print_rows(letters: Sequence[dlq.DeadLetter]) -> None:
    if letters:
        print(format_table([_table_row(letter) for letter in letters], LIST_COLUMNS))


class ProgressBar:
    """``(done, total)`` callback: a bar redrawn in place on a terminal, a line per 10% else.

    Silent for runs shorter than ``min_total``.
    """

    def __init__(self, stream: TextIO | None = None, *, min_total: int = 20, width: int = 30):
        self.stream = stream or sys.stderr
        self.min_total = min_total
        self.width = width
        self._tty = self.stream.isatty()
        self._last_step = -1

    def __call__(self, done: int, total: int) -> None:
        if total < self.min_total:
            return
        if self._tty:
            filled = self.width * done // total
            bar = "#" * filled + "." * (self.width - filled)
            end = "\n" if done >= total else ""
            self.stream.write(f"\r[{bar}] {done}/{total}{end}")
        else:
            step = 10 * done // total
            if step == self._last_step:
                return
            self._last_step = step
            self.stream.write(f"replayed {done}/{total}\n")
        self.stream.flush()


# --- commands ------------------------------------------------------------------------------


@guard
async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    letters = await dlq.list_dead_letters(settings, _filters(args))
    if args.group_by:
        groups = dlq.group_counts(letters, args.group_by)
        if args.json:
            print_json(
                {
                    "group_by": args.group_by,
                    "total": len(letters),
                    "groups": [{"key": k, "count": n} for k, n in groups],
                }
            )
        else:
            rows = [{"key": k, "count": n} for k, n in groups]
            print(format_table(rows, ((args.group_by.upper(), "key", 60), ("COUNT", "count", 9))))
            print(f"{len(letters)} dead letter(s)")
        return ExitCode.OK
    if args.json:
        print_json([letter.row() for letter in letters])
    else:
        _print_rows(letters)
        print(f"{len(letters)} dead letter(s)")
    return ExitCode.OK


@guard
async def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    detail = await dlq.show_dead_letter(settings, args.id)
    if detail is None:
        err(args, f"no dead letter with id {args.id}")
        return ExitCode.FAILED
    if args.json:
        print_json(detail)
        return ExitCode.OK
    print(render_detail(detail))
    return ExitCode.OK


def render_detail(detail: Mapping[str, Any]) -> str:
    """The readable ``show`` page."""
    s = detail["summary"]
    e = detail["error"]
    lines = [
        f"Dead letter {detail['id']}"
        + (f"  ({detail['copies']} copies in the queue)" if detail["copies"] > 1 else ""),
        "",
        f"Error         {e['code']} ({s['error_class']}): {e['title']}",
        f"What to do    {e['fix']}",
        f"Message       {s['message'] or '-'}",
        f"Organization  {cell(s['org'])}",
        f"Type          {cell(s['type'])}",
        f"Object        {cell(s['subject'])}",
        f"Event id      {cell(s['event_id'])}",
        f"Attempts      {cell(s['attempts'])}",
        f"First failure {cell(s['first_failure'])}",
        f"Last failure  {cell(s['last_failure'])}",
    ]
    if s.get("replay_id"):
        lines.append(f"Replayed in   {s['replay_id']} (and failed again)")
    history = detail["history"]
    if history:
        lines += ["", "History"]
        rows = [
            {k: h.get(k) for k in ("at", "attempt", "class", "code", "message")} for h in history
        ]
        cols = (
            ("AT", "at", 24),
            ("ATT", "attempt", 3),
            ("CLASS", "class", 18),
            ("CODE", "code", 26),
            ("MESSAGE", "message", 80),
        )
        lines += ["  " + line for line in format_table(rows, cols).splitlines()]
    lines += ["", "Headers"]
    for key, value in sorted(detail["headers"].items()):
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"  {key}: {shown}")
    if detail["envelope"] is not None:
        lines += ["", "Envelope", json.dumps(detail["envelope"], indent=2, ensure_ascii=False)]
    else:
        lines += ["", "Body (not JSON)", detail["body"] or ""]
    return "\n".join(lines)


@guard
async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    result = await dlq.replay(
        settings,
        _filters(args),
        actor=actor(),
        dry_run=args.dry_run,
        progress=None if args.json else ProgressBar(),
        rate=args.rate,
    )
    if args.json:
        print_json({**result.summary(), "ids": [letter.id for letter in result.letters]})
    elif args.dry_run:
        _print_rows(result.letters)
        print(f"Would replay {result.matched} dead letter(s) (dry run, nothing moved).")
    else:
        print(
            f"Replayed {result.replayed} of {result.matched} dead letter(s) "
            f"to {settings.queue('exports')} (replay id {result.replay_id})."
        )
    if result.error:
        err(args, f"stopped: {result.error}; the rest are still in the dead-letter queue")
        return ExitCode.FAILED
    return ExitCode.OK


@guard
async def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    filters = _filters(args)
    only_ids: set[str] | None = None
    if args.dry_run or not args.yes:
        letters = await dlq.list_dead_letters(settings, filters)
        if args.dry_run:
            if args.json:
                print_json({"dry_run": True, "matched": len(letters), "ids": _ids(letters)})
            else:
                _print_rows(letters)
                print(f"Would purge {len(letters)} dead letter(s) (dry run, nothing deleted).")
            return ExitCode.OK
        if not letters:
            print("No dead letters match; nothing to purge.")
            return ExitCode.OK
        if not sys.stdin.isatty():
            err(
                args,
                f"refusing to purge {len(letters)} dead letter(s) without confirmation: "
                "there is no terminal to ask on. Pass --yes to confirm.",
            )
            return ExitCode.FAILED
        if not await _confirm(f"Purge {len(letters)} dead letters? [y/N] "):
            print("Nothing purged.")
            return ExitCode.FAILED
        # Only what the person just agreed to; anything that arrived since stays.
        only_ids = {letter.id for letter in letters}
    archive = None if args.no_archive else Path(args.archive or dlq.default_archive_path())
    result = await dlq.purge(settings, filters, actor=actor(), archive=archive, only_ids=only_ids)
    if args.json:
        print_json({**result.summary(), "ids": _ids(result.letters)})
    else:
        where = f"; archived to {result.archive}" if result.archive else " (no archive)"
        print(f"Purged {result.purged} dead letter(s){where}.")
    return ExitCode.OK


def _ids(letters: Sequence[dlq.DeadLetter]) -> list[str]:
    return [letter.id for letter in letters]


async def _confirm(prompt: str) -> bool:
    try:
        answer = await asyncio.to_thread(input, prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


# --- wiring --------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dlq list|show|replay|purge`` to the ``bc-sync`` sub-commands."""
    parser = subparsers.add_parser(
        "dlq",
        help="inspect, replay and purge dead letters",
        description="Dead letters: events that failed permanently or used up their attempts.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = add_command(
        sub,
        "list",
        cmd_list,
        "list dead letters (read only)",
        description="List dead letters, oldest "
        "first. Reads only: every message stays in the queue, in its order.",
    )
    _add_filters(ls)
    ls.add_argument("--group-by", choices=dlq.GROUP_BY, help="counts per code, org or type")

    show = add_command(
        sub,
        "show",
        cmd_show,
        "one dead letter in full",
        description="Envelope, headers, failure "
        "history, and what the error code means and how to fix it.",
    )
    show.add_argument("id", help="the id `dlq list` shows (event id, or sha256:… of the body)")

    rp = add_command(
        sub,
        "replay",
        cmd_replay,
        "send dead letters back to the exports queue",
        description="Publish each matching dead letter back to the exports queue (failure "
        "headers reset, so it gets all its attempts again) with a broker confirm, then remove "
        "it from the dead-letter queue. Never loses a message: an interruption can at worst "
        "leave one in both queues (handling is idempotent).",
    )
    _add_filters(rp)
    rp.add_argument("--dry-run", action="store_true", help="only show what would be replayed")
    rp.add_argument(
        "--rate", type=_rate, metavar="N", help="at most N messages per second (spare BC)"
    )

    pg = add_command(
        sub,
        "purge",
        cmd_purge,
        "delete dead letters (archived first)",
        description="Delete matching dead letters. They are written to an archive file first "
        "(JSON lines, fsynced) unless --no-archive. Asks for confirmation unless --yes.",
    )
    _add_filters(pg)
    pg.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    where = pg.add_mutually_exclusive_group()
    where.add_argument(
        "--archive",
        metavar="FILE",
        help="archive file (appended; default ./dlq-archive-<UTC time>.jsonl)",
    )
    where.add_argument("--no-archive", action="store_true", help="delete without an archive")
    pg.add_argument("--dry-run", action="store_true", help="only show what would be purged")
