"""Redaction with the memo of repeated log values (worker/log.py): a secret registered after a
text was logged is masked in that same text from then on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from worker.log import bound, configure, redact_text, register_secret


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    configure("json", "INFO")

    def read() -> list[dict[str, object]]:
        err = capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines() if line.startswith("{")]

    yield read
    structlog.reset_defaults()


def test_a_secret_registered_later_is_masked_in_a_text_seen_before() -> None:
    text = "calling with late-secret-4f1c9 in the query"
    assert redact_text(text) == text  # remembered as harmless
    register_secret("late-secret-4f1c9")
    assert "late-secret-4f1c9" not in redact_text(text)


def test_repeated_context_and_fields_are_redacted_on_every_line(json_lines: object) -> None:
    register_secret("ctx-secret-8d2e7")
    log = structlog.get_logger("t")
    with bound(org="org-1", note="uses ctx-secret-8d2e7"):
        for _ in range(3):
            log.info("t.line", url="amqp://u:pw-77aa11@h/", api_key="k-1", attempt=2)
    lines = json_lines()  # type: ignore[operator]
    assert len(lines) == 3
    text = json.dumps(lines)
    for leaked in ("ctx-secret-8d2e7", "pw-77aa11", "k-1"):
        assert leaked not in text
    assert all(line["attempt"] == 2 and line["org"] == "org-1" for line in lines)
