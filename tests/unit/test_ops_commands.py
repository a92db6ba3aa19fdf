"""The `dlq` command line: argument parsing, tables, progress output."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest

from worker.cli import build_parser
from worker.cli.common import format_table
from worker.cli.dlq import ProgressBar
from worker.ops.dlq import Filters


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dlq", *argv])


def test_filters_and_flags_parse() -> None:
    args = parse("list", "--org", "org-a", "--since", "2h", "--limit", "5", "--json")
    assert (args.org, args.since, args.limit, args.json) == ("org-a", "2h", 5, True)
    args = parse("replay", "--code", "BC-*", "--dry-run", "--rate", "2.5", "--id", "a", "--id", "b")
    assert args.ids == ["a", "b"]
    assert args.rate == 2.5
    args = parse("purge", "--yes", "--archive", "x.jsonl")
    assert (args.yes, args.archive) == (True, "x.jsonl")


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "--limit", "0"],
        ["list", "--since", "whenever"],
        ["list", "--group-by", "colour"],
        ["replay", "--rate", "-1"],
        ["purge", "--archive", "a.jsonl", "--no-archive"],
        ["show"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err


def test_parsed_filters_round_trip() -> None:
    args = parse("list", "--org", "o", "--type", "t", "--code", "c", "--until", "2026-11-20")
    filters = Filters.parse(org=args.org, type=args.type, code=args.code, until=args.until)
    assert filters.describe() == {
        "org": "o",
        "type": "t",
        "code": "c",
        "until": "2026-11-20T00:00:00.000Z",
    }


def test_table_columns_are_fixed_width_and_cut_long_cells() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "ev-1", "message": "short"},
        {"id": "ev-22222", "message": "x" * 100 + "\nsecond line"},
        {"id": None, "message": ""},
    ]
    out = format_table(rows, (("ID", "id", 6), ("MESSAGE", "message", 20)))
    lines = out.splitlines()
    assert lines[0] == "ID      MESSAGE"
    assert lines[1] == "ev-1    short"
    assert lines[2] == "ev-22…  " + "x" * 19 + "…"
    assert lines[3] == "-"
    assert all(len(line) <= 6 + 2 + 20 for line in lines)


def test_progress_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, min_total=20)
    for done in range(1, 41):
        bar(done, 40)
    lines = out.getvalue().splitlines()
    assert lines[0] == "replayed 1/40"
    assert lines[-1] == "replayed 40/40"
    assert len(lines) == 11  # one per 10 %


def test_no_progress_for_short_runs() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, min_total=20)
    for done in range(1, 6):
        bar(done, 5)
    assert out.getvalue() == ""
