"""Settings fail readably; logs carry context and never a secret."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from worker.config.settings import SettingsError, load_settings
from worker.log import bound, configure, redact_text, register_secret


def test_defaults_match_the_design_table() -> None:
    s = load_settings(_env_file=None)
    assert s.exchange == "moment.events"
    assert s.queue_prefix == "bc-sync"
    assert s.prefetch == 256
    assert s.fair_share is True
    assert s.retry_delays == (10, 60, 600, 3600, 21600)
    assert s.attempts == 6
    assert s.poll_interval_s == 300
    assert s.http_port == 8080


def test_retry_delays_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BC_SYNC_RETRY_DELAYS", "1, 5,30")
    assert load_settings(_env_file=None).retry_delays == (1, 5, 30)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BC_SYNC_PREFETCH", "zero"),
        ("BC_SYNC_PREFETCH", "0"),
        ("BC_SYNC_RETRY_DELAYS", "10,soon"),
        ("BC_SYNC_RETRY_DELAYS", "-1"),
        ("BC_SYNC_BC_API_URL", "http://insecure"),
        ("BC_SYNC_AMQP_URL", "redis://x"),
        ("BC_SYNC_DATABASE_URL", "mysql://x"),
        ("BC_SYNC_LOG_FORMAT", "xml"),
        ("BC_SYNC_CA_FILE", "/nonexistent/ca.pem"),
    ],
)
def test_a_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert name in str(err.value)
    assert "\n" not in str(err.value)


def test_the_cli_prints_one_line_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "topology", "export"],
        env={"BC_SYNC_PREFETCH": "lots", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "BC_SYNC_PREFETCH" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "BC_SYNC_API_TOKEN"),  # the api role cannot run without it
        ({"BC_SYNC_API_TOKEN": "t"}, "BC_SYNC_SECRET_KEY"),  # nor any role without the key
    ],
)
def test_run_without_a_required_secret_setting_says_which_in_one_line(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        env={
            "PATH": "/usr/bin",
            "BC_SYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith(f"bc-sync: invalid setting: {named}")


def test_amqp_password_is_not_in_the_settings_repr() -> None:
    s = load_settings(_env_file=None, amqp_url="amqp://u:hunter2secret@h:5672/")
    assert "hunter2secret" not in repr(s)


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    configure("json", "INFO")

    def read() -> list[dict[str, object]]:
        err = capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines() if line.startswith("{")]

    yield read
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_log_lines_carry_message_context(json_logs: object) -> None:
    log = structlog.get_logger("t")
    with bound(org="org-1", event_id="ev-1", event_type="moment.invoice.created", attempt=2):
        log.info("handling")
        logging.getLogger("aio_pika.x").warning("library line")
    log.info("outside")
    lines = json_logs()  # type: ignore[operator]
    inside = [entry for entry in lines if entry["event"] in ("handling", "library line")]
    assert len(inside) == 2
    for entry in inside:
        assert (entry["org"], entry["event_id"], entry["attempt"]) == ("org-1", "ev-1", 2)
    outside = next(entry for entry in lines if entry["event"] == "outside")
    assert "org" not in outside


def test_secrets_are_redacted_from_fields_and_text(json_logs: object) -> None:
    register_secret("s3cr3t-client-value")
    log = structlog.get_logger("t")
    log.info(
        "calling",
        client_secret="plain",
        headers={"Authorization": "Bearer abc.def.ghi"},
        url="amqp://guest:pw123456@host/",
        note="token was s3cr3t-client-value",
        detail="client_secret=xyz123&scope=a",
    )
    text = json.dumps(json_logs())  # type: ignore[operator]
    for leaked in ("plain", "abc.def.ghi", "pw123456", "s3cr3t-client-value", "xyz123"):
        assert leaked not in text


def test_redact_text_masks_bearer_and_jwt() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk"
    out = redact_text(f"Authorization: Bearer tok123 and {jwt}")
    assert "tok123" not in out and jwt not in out


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("auth: BEARER Tok-UPPER-123", "Tok-UPPER-123"),
        (
            "id_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
            "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
        ),
        ("broker at AMQPS://guest:Pw-Mixed-99@rabbit:5671/", "Pw-Mixed-99"),
        ('{"Client_Secret": "cs-value-77"}', "cs-value-77"),
        ("ACCESS_TOKEN=at-value-88&x=1", "at-value-88"),
        ("Password: pw-value-66", "pw-value-66"),
    ],
)
def test_redaction_does_not_depend_on_case_or_place(text: str, leaked: str) -> None:
    # Text without a hint skips the patterns; these all carry one in some case or position.
    assert leaked not in redact_text(f"prefix {text} suffix")


def test_plain_text_passes_unchanged() -> None:
    text = "customer C00042 created in BC as 0f0e0d0c-1234-5678-9abc-def012345678"
    assert redact_text(text) == text
