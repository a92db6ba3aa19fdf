"""``bc-sync poll --once [--org ID] [--json]`` against the emulator, a real broker and SQLite,
through the parser that ``worker/cli/main.py`` builds with :func:`register`."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.emulator.fixtures import EmulatorHandle
from tests.support.amqp import drop_topology
from tests.support.cli import json_out
from tests.support.db import KEY
from tests.support.settings import emulator_settings
from worker.cli.poll import register
from worker.config.crypto import SecretBox
from worker.config.model import parse_config
from worker.config.settings import Settings
from worker.store import Store

ORG = "org-cli"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bc-sync")
    register(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
async def cli_settings(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Settings]:
    s = emulator_settings(tmp_path, emulator, amqp_url=amqp_url)
    store = Store.from_url(s.database_url, secrets=SecretBox([KEY]))
    await store.migrate()
    await store.configs.put(
        ORG,
        parse_config(
            {
                "tenant_id": emulator.tenant_id,
                "client_secret": emulator.client_secret,
                "environment": emulator.environment,
                "company_name": emulator.company_name,
                "project_dimension": "PROJEKT",
                "import_expenses": True,
                "expenses_from_date": "2026-01-01",
                "expense_activity": "Inköp",
                "expenses_billable": True,
            }
        ),
    )
    await store.close()
    yield s
    await drop_topology(s)


def printed(out: str) -> list[str]:
    """What the command printed (in-process, unconfigured structlog logs to stdout too)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("{", "ORG ")))
    return lines[start:]


async def run(settings: Settings, *argv: str) -> int:
    args = parser().parse_args(list(argv))
    return int(await args.func(args, settings))


async def test_poll_once_prints_what_it_published(
    cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(cli_settings, "poll", "--once", "--json") == 0
    [org] = json_out(capsys.readouterr().out)["organizations"]
    assert (org["org"], org["status"], org["published"], org["skipped_lines"]) == (
        ORG,
        "ok",
        4,
        1,
    )
    assert org["watermark"]

    assert await run(cli_settings, "poll", "--once", "--org", ORG) == 0
    table = printed(capsys.readouterr().out)
    assert table[0].split()[:3] == ["ORG", "STATUS", "PUBLISHED"]
    assert table[1].split()[:3] == [ORG, "ok", "0"]  # nothing twice

    assert await run(cli_settings, "poll", "--once", "--org", "org-unknown", "--json") == 0
    [unknown] = json_out(capsys.readouterr().out)["organizations"]
    assert (unknown["status"], unknown["reason"]) == ("skipped", "not_configured")


async def test_poll_once_fails_when_bc_rejects_the_credentials(
    cli_settings: Settings, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=False)
    assert await run(cli_settings, "poll", "--once") == 1
    out = capsys.readouterr().out
    assert "paused" in out and "BC-CREDENTIALS-REJECTED" in out
    assert emulator.client_secret not in out


def test_poll_needs_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["poll"])
    assert exc.value.code == 2
    assert "--once" in capsys.readouterr().err
