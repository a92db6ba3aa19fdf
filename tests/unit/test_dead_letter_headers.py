"""The dead-letter header format (worker/messaging/headers.py): what the consumer writes is
what the dead-letter tools read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.messaging import headers as H
from worker.ops.dlq import DeadLetter

BODY = b'{"id": "e-1", "type": "moment.invoice.created", "organizationid": "org-1", "data": {}}'
# What the consumer knows about a permanent failure of invoice 1866.
FAILURE: dict[str, Any] = {
    "routing_key": "moment.invoice.created",
    "code": "BC-ACCOUNT-MISSING",
    "message": "A G/L account on invoice 1866 does not exist",
    "error_class": "permanent",
    "attempts": 2,
    "org": "org-1",
    "event_id": "e-1",
    "event_type": "moment.invoice.created",
    "subject": "invoice 1866",
}


def test_a_retried_then_dead_lettered_message_reads_back_as_written() -> None:
    first = H.retry_headers(
        {"x-custom": "kept"},
        routing_key="moment.invoice.created",
        attempt=1,
        code="BC-UNAVAILABLE",
        message="BC answered 503",
        now="2026-11-20T10:00:00.000Z",
    )
    dead = H.dead_letter_headers(
        first,
        **FAILURE,
        bc_status=400,
        bc_code="Internal_RecordNotFound",
        now="2026-11-20T10:01:00.000Z",
    )
    failure = H.read_failure(dead)
    assert failure.code == "BC-ACCOUNT-MISSING"
    assert failure.message == "A G/L account on invoice 1866 does not exist"
    assert failure.error_class == "permanent"
    assert failure.attempts == 2
    assert failure.attempt is None  # the ladder's counter is dropped on dead-lettering
    assert failure.first_failure == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert failure.last_failure == datetime(2026, 11, 20, 10, 1, tzinfo=UTC)
    assert (failure.org, failure.event_id, failure.event_type, failure.subject) == (
        "org-1",
        "e-1",
        "moment.invoice.created",
        "invoice 1866",
    )
    assert (failure.bc_status, failure.bc_code) == (400, "Internal_RecordNotFound")
    assert [(h["code"], h["class"], h["attempt"]) for h in failure.history] == [
        ("BC-UNAVAILABLE", "transient", 1),
        ("BC-ACCOUNT-MISSING", "permanent", 2),
    ]
    assert dead["x-custom"] == "kept"

    letter = DeadLetter.from_message(BODY, dead)
    assert (letter.id, letter.code, letter.error_class, letter.attempts) == (
        "e-1",
        "BC-ACCOUNT-MISSING",
        "permanent",
        2,
    )
    assert letter.last_failure == failure.last_failure
    assert [h["code"] for h in letter.history()] == ["BC-UNAVAILABLE", "BC-ACCOUNT-MISSING"]


def test_a_replayed_copy_starts_its_failure_history_again() -> None:
    dead = H.dead_letter_headers(
        {"x-death": [{"reason": "rejected"}], "x-custom": "kept"}, **FAILURE
    )
    copy = H.replay_headers(
        dead, routing_key="moment.invoice.created", replay_id="r-1", at="2026-11-20T11:00:00Z"
    )
    assert copy == {
        "x-custom": "kept",
        H.ROUTING_KEY: "moment.invoice.created",
        H.REPLAY_ID: "r-1",
        H.REPLAYED_AT: "2026-11-20T11:00:00Z",
    }
    again = H.read_failure(copy)
    assert (again.code, again.error_class, again.attempts, again.history) == (None, None, None, ())
    assert again.replay_id == "r-1"


def test_untrusted_values_are_bounded_and_redacted() -> None:
    hostile = {"message": "x" * 5000, "org": "o" * 1000, "event_id": {"not": "a string"}}
    dead = H.dead_letter_headers({}, **{**FAILURE, **hostile, "event_type": None})
    failure = H.read_failure(dead)
    assert failure.message is not None and len(failure.message) == H.MAX_HEADER_TEXT
    assert failure.org is not None and len(failure.org) == H.MAX_HEADER_LABEL
    assert failure.event_id == repr({"not": "a string"})
    assert failure.event_type is None  # written as "", read as absent
