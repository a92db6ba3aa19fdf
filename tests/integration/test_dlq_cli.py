"""`bc-sync dlq …` as ops type it: output, confirmation, archive, audit lines, exit codes."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.amqp import depth
from tests.support.cli import REPO, cli_env, json_out, run_cli
from tests.support.dead_letters import Spec, dead_ids, make_dead_letters
from worker.cli import build_parser
from worker.config.settings import Settings
from worker.errors import CATALOGUE

SPECS = [
    Spec("1", org="org-a", code="BC-POSTING-GROUP-MISSING"),
    Spec("2", org="org-b", code="BC-DIMENSION-MISSING"),
    Spec("3", org="org-a", code="BC-POSTING-GROUP-MISSING"),
]


async def run(settings: Settings, *argv: str) -> int:
    """Run one command in this process, exactly as the CLI dispatches it."""
    args = build_parser().parse_args(["dlq", *argv])
    code: int = await args.func(args, settings)
    return code


async def run_process(
    settings: Settings, cwd: Path, *argv: str
) -> subprocess.CompletedProcess[str]:
    return await run_cli(cli_env(settings), cwd, "dlq", *argv)


async def test_list_prints_a_table_json_and_counts(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_dead_letters(settings, SPECS)
    capsys.readouterr()

    assert await run(settings, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["ID", "ORG", "TYPE", "SUBJECT", "CODE"]
    assert [line.split()[0] for line in lines[1:4]] == [s.id for s in SPECS]
    assert lines[-1] == "3 dead letter(s)"
    # Columns line up: every row is cut to the same widths.
    starts = [line.index("BC-") for line in lines[1:4]]
    assert len(set(starts)) == 1

    assert await run(settings, "list", "--org", "org-a", "--json") == 0
    rows = json_out(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["ev-org-a-1", "ev-org-a-3"]

    assert await run(settings, "list", "--group-by", "code", "--json") == 0
    grouped = json_out(capsys.readouterr().out)
    assert grouped["groups"] == [
        {"key": "BC-POSTING-GROUP-MISSING", "count": 2},
        {"key": "BC-DIMENSION-MISSING", "count": 1},
    ]
    assert await depth(settings, settings.queue("dead")) == 3


async def test_show_explains_the_code(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_dead_letters(settings, SPECS[:1])
    capsys.readouterr()
    assert await run(settings, "show", "ev-org-a-1") == 0
    out = capsys.readouterr().out
    assert CATALOGUE["BC-POSTING-GROUP-MISSING"].title in out
    assert CATALOGUE["BC-POSTING-GROUP-MISSING"].fix in out
    assert '"organizationid": "org-a"' in out  # the envelope, pretty-printed
    assert "x-bc-history" in out
    assert await run(settings, "show", "nope") == 1
    assert "no dead letter with id nope" in capsys.readouterr().err


async def test_replay_dry_run_then_replay(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_dead_letters(settings, SPECS)
    capsys.readouterr()
    assert await run(settings, "replay", "--code", "BC-DIMENSION-MISSING", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "ev-org-b-2" in out
    assert "Would replay 1 dead letter(s)" in out
    assert await depth(settings, settings.queue("exports")) == 0

    assert await run(settings, "replay", "--org", "org-a", "--json") == 0
    summary = json_out(capsys.readouterr().out)
    assert (summary["matched"], summary["replayed"]) == (2, 2)
    assert summary["ids"] == ["ev-org-a-1", "ev-org-a-3"]
    assert await depth(settings, settings.queue("exports")) == 2
    assert await dead_ids(settings) == ["ev-org-b-2"]


async def test_purge_refuses_without_a_terminal_and_purges_with_yes(
    settings: Settings, tmp_path: Path
) -> None:
    await make_dead_letters(settings, SPECS)
    refused = await run_process(settings, tmp_path, "purge", "--org", "org-a")
    assert refused.returncode == 1
    assert "refusing to purge 2 dead letter(s)" in refused.stderr
    assert "--yes" in refused.stderr
    assert await depth(settings, settings.queue("dead")) == 3

    archive = tmp_path / "kept.jsonl"
    done = await run_process(
        settings, tmp_path, "purge", "--org", "org-a", "--yes", "--archive", str(archive)
    )
    assert done.returncode == 0, done.stderr
    assert f"Purged 2 dead letter(s); archived to {archive}" in done.stdout
    assert [json.loads(x)["id"] for x in archive.read_text().splitlines()] == [
        "ev-org-a-1",
        "ev-org-a-3",
    ]
    audit = [json.loads(x) for x in done.stderr.splitlines() if '"audit"' in x]
    assert len(audit) == 1
    assert audit[0]["action"] == "dlq.purge"
    assert audit[0]["actor"] == f"cli:{getpass.getuser()}"
    assert audit[0]["filters"] == {"org": "org-a"}
    assert audit[0]["purged"] == 2
    assert await dead_ids(settings) == ["ev-org-b-2"]


async def test_purge_archives_by_default_in_the_working_folder(
    settings: Settings, tmp_path: Path
) -> None:
    await make_dead_letters(settings, SPECS[:1])
    done = await run_process(settings, tmp_path, "purge", "--yes")
    assert done.returncode == 0, done.stderr
    [archive] = tmp_path.glob("dlq-archive-*.jsonl")
    assert json.loads(archive.read_text())["id"] == "ev-org-a-1"
    assert await depth(settings, settings.queue("dead")) == 0


def test_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["dlq", "list", "--since", "yesterday-ish"])
    assert exit_.value.code == 2
    assert "relative time (30m, 2h, 7d)" in capsys.readouterr().err


def test_help_names_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "dlq", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("list", "show", "replay", "purge"):
        assert name in out
