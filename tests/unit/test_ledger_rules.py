"""The sync ledger's pure rules: the order of changes (time, sequence, id), the ``sequence``
extension in the contract, when Moment hears of a state, what the healer reads from a dead
letter, and the log's filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.support import factories as f
from worker.errors import InvalidEvent
from worker.events.envelope import parse
from worker.messaging import headers as H
from worker.ops.dlq import DeadLetter
from worker.ops.heal import Fact, facts_of, healed_at
from worker.sync.ledger import (
    Cursor,
    LogFilterError,
    LogFilters,
    event_key,
    order_key,
    superseded,
)
from worker.sync.tracking import announce

T = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def event(time: str | None, sequence: Any = None, id_: str = "e") -> Any:
    env = f.envelope("moment.customer.updated", {"customer": f.customer()}, id_=id_)
    env["time"] = time
    if sequence is not None:
        env["sequence"] = sequence
    return parse(json.dumps(env).encode())


def test_time_orders_changes_in_utc_whatever_the_offset() -> None:
    stockholm = timezone(timedelta(hours=1))
    earlier = order_key(datetime(2026, 11, 25, 10, 30, tzinfo=stockholm), None, "z")  # 09:30Z
    assert earlier < order_key(T, None, "a")
    assert order_key(T, None, "a") < order_key(T + timedelta(microseconds=1), None, "a")
    assert order_key(None, "5", "z") < order_key(T, None, "a")  # no time: before any time


def test_sequence_breaks_a_time_tie_as_an_integer_then_the_id_as_a_string() -> None:
    assert order_key(T, "9", "z") < order_key(T, "10", "a")
    assert order_key(T, "007", "x") == order_key(T, "7", "x")
    assert order_key(T, None, "z") < order_key(T, "0", "a")
    assert order_key(T, None, "B") < order_key(T, None, "a")  # code point order
    assert event_key(event("2026-11-25T10:00:00Z", 12)) > event_key(
        event("2026-11-25T10:00:00Z", "3")
    )


def test_the_applied_event_itself_is_never_superseded() -> None:
    new, old = order_key(T, None, "b"), order_key(T - timedelta(seconds=1), None, "a")
    assert superseded(old, "a", new, "b")
    assert not superseded(new, "b", new, "b")
    assert not superseded(old, "b", new, "b")  # the same id Moment sent again, older time
    assert not superseded(old, "a", None, None)


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "", "1" * 31, True])
def test_a_bad_sequence_makes_the_event_invalid_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        event("2026-11-25T10:00:00Z", bad)
    assert "sequence" in str(caught.value)


def test_moment_hears_of_failed_and_waiting_once_and_of_synced_only_after_them() -> None:
    assert announce("failed", None) and announce("failed", "synced")
    assert not announce("failed", "failed")
    assert announce("waiting", "failed") and not announce("waiting", "waiting")
    assert announce("synced", "failed") and announce("synced", "waiting")
    assert not announce("synced", None) and not announce("synced", "synced")
    assert not announce("skipped", "failed") and not announce("retrying", None)


def letter(code: str, headers: dict[str, Any]) -> DeadLetter:
    body = f.body("moment.invoice.created", {"invoice": f.invoice()})
    return DeadLetter.from_message(body, {H.ERROR_CODE: code, **headers})


def test_the_healer_reads_what_a_dead_letter_misses() -> None:
    missing = [
        {"kind": "gl_account", "value": "9999"},
        {"kind": "dimension_value", "dimension": "AVDELNING", "value": "200"},
    ]
    assert facts_of(letter("BC-ACCOUNT-MISSING", {H.MISSING: missing})) == (
        Fact("gl_account", "9999"),
        Fact("dimension_value", "200", "AVDELNING"),
    )
    assert facts_of(letter("BC-CREDENTIALS-REJECTED", {})) == (Fact("credentials", ""),)
    assert facts_of(letter("BC-ACCOUNT-MISSING", {})) is None  # a save still heals it
    for bad in ([{"kind": "planet", "value": "x"}], [{"kind": "dimension_value", "value": "1"}]):
        assert facts_of(letter("BC-ACCOUNT-MISSING", {H.MISSING: bad})) is None
    assert healed_at(letter("X", {H.HEALED_AT: "2026-11-25T10:00:00.000Z"})) == T
    assert healed_at(letter("X", {H.HEALED_AT: "garbage"})) is None


def test_log_filters_and_cursors() -> None:
    cursor = Cursor(T, "invoice", "i-1")
    assert Cursor.decode(cursor.encode()) == cursor
    assert LogFilters.parse(type="invoice", state="failed", limit="10", cursor=cursor.encode())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "order"}, "type"),
        ({"state": "lost"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "!!"}, "cursor"),
        ({"number": "9" * 201}, "number"),
    ]
    for kwargs, name in cases:
        with pytest.raises(LogFilterError) as caught:
            LogFilters.parse(**kwargs)
        assert caught.value.field == name
