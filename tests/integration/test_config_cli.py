"""`bc-sync config get|put|delete` and `bc-sync verify` as an operator types them, against the
emulator and a real SQLite file (the parser is built with the module's own ``register``)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.emulator.fixtures import EmulatorHandle
from tests.emulator.seed import DEMO
from tests.support.cli import json_out
from tests.support.factories import dialog
from tests.support.net import closed_port_url
from tests.support.settings import emulator_settings
from worker.cli.common import ExitCode
from worker.cli.config import register
from worker.config.settings import Settings

ORG = "org-acme"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bc-sync")
    register(p.add_subparsers(dest="command", required=True))
    return p


async def run(settings: Settings, *argv: str) -> int:
    args = parser().parse_args(list(argv))
    code: int = await args.func(args, settings)
    return code


@pytest.fixture
def cli_settings(tmp_path: Path, emulator: EmulatorHandle) -> Settings:
    return emulator_settings(tmp_path, emulator)


def write(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return str(path)


async def test_put_get_verify_delete(
    cli_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with capture_logs() as logs:
        assert await run(cli_settings, "config", "put", ORG, write(tmp_path, dialog())) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "Created"

        # From stdin, without the secret: the stored one is kept.
        no_secret = dialog(notes="from stdin")
        del no_secret["client_secret"]
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(no_secret)))
        assert await run(cli_settings, "config", "put", ORG) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "Updated"

        assert await run(cli_settings, "config", "get", ORG) == 0
        shown = json_out(capsys.readouterr().out)
        assert shown["notes"] == "from stdin"
        assert shown["client_secret_set"] is True
        assert "client_secret" not in shown

        assert await run(cli_settings, "verify", ORG) == 0
        out = capsys.readouterr().out
        assert f"OK: company 'CRONUS Sverige AB' ({DEMO.company_id}), country SE" in out

        assert await run(cli_settings, "config", "delete", ORG) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "Deleted"
        assert await run(cli_settings, "config", "get", ORG) == ExitCode.FAILED
        assert "has no Business Central integration" in capsys.readouterr().err
        assert await run(cli_settings, "verify", ORG) == ExitCode.FAILED

    audit = [e["action"] for e in logs if e["event"] == "audit"]
    assert audit == ["config.created", "config.updated", "config.deleted"]
    assert all(e["actor"].startswith("cli:") for e in logs if e["event"] == "audit")
    assert DEMO.client_secret not in repr(logs)


async def test_field_errors_exit_1(
    cli_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = write(tmp_path, dialog(company_name="CRONUS Sverge AB"))
    assert await run(cli_settings, "config", "put", ORG, body) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("company_name: Company name: there is no company named")
    assert "[not_found]" in err

    assert await run(cli_settings, "config", "put", ORG, body, "--json") == ExitCode.FAILED
    errors = json_out(capsys.readouterr().out)["errors"]
    assert [e["field"] for e in errors] == ["company_name"]

    (tmp_path / "bad.json").write_text("{nope", encoding="utf-8")
    assert await run(cli_settings, "config", "put", ORG, str(tmp_path / "bad.json")) == 1
    assert "not valid JSON" in capsys.readouterr().err


async def test_verify_reports_what_changed_in_bc(
    cli_settings: Settings,
    tmp_path: Path,
    emulator: EmulatorHandle,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run(cli_settings, "config", "put", ORG, write(tmp_path, dialog())) == 0
    await emulator.control.delete("gen_bus_posting_group", "EXPORT", at=emulator.company_ref)
    capsys.readouterr()
    assert await run(cli_settings, "verify", ORG, "--json") == ExitCode.FAILED
    errors = json_out(capsys.readouterr().out)["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        ("customer_posting_groups.abroad.gen_bus_posting_group", "not_found")
    ]


async def test_bc_unreachable_exits_3(
    tmp_path: Path, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url()
    settings = emulator_settings(tmp_path, emulator, bc_api_url=url, authority_url=url)
    assert await run(settings, "config", "put", ORG, write(tmp_path, dialog())) == (
        ExitCode.UNREACHABLE
    )
    assert "could not be reached" in capsys.readouterr().err
    assert await run(settings, "config", "get", ORG) == ExitCode.FAILED


def test_usage() -> None:
    args = parser().parse_args(["config", "put", "org-1"])
    assert args.file == "-"
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["config", "frobnicate", "org-1"])
    assert exit_.value.code == 2
