"""Dead letters as people see them: parsing headers, filters, times, replay headers, redaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.support import factories as f
from worker.messaging import headers as H
from worker.ops.dlq import DeadLetter, FilterError, Filters, group_counts, jsonable, parse_time

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BODY = f.customer_event("1864", id_="ev-1")


def ours(**over: Any) -> dict[str, Any]:
    """Headers as the consumer writes them on a permanent failure."""
    headers: dict[str, Any] = {
        H.ROUTING_KEY: "moment.customer.created",
        H.ERROR_CODE: "BC-POSTING-GROUP-MISSING",
        H.ERROR_MESSAGE: "Customer posting group 'KUNDER-EXP' does not exist",
        H.ERROR_CLASS: "permanent",
        H.ATTEMPTS: 1,
        H.FIRST_FAILURE: "2026-11-25T10:00:00.000Z",
        H.LAST_FAILURE: "2026-11-25T10:05:00.000Z",
        H.ORG: "org-a",
        H.EVENT_ID: "ev-1",
        H.EVENT_TYPE: "moment.customer.created",
        H.SUBJECT: "customer 1864",
        H.HISTORY: [
            {"at": "2026-11-25T10:05:00.000Z", "code": "BC-POSTING-GROUP-MISSING", "attempt": 1}
        ],
        "x-delivery-count": 3,
    }
    headers.update(over)
    return headers


def broker_limit(**over: Any) -> dict[str, Any]:
    """Headers of a message the broker dead-lettered at the exports queue's delivery limit."""
    headers: dict[str, Any] = {
        "x-death": [
            {
                "count": 1,
                "reason": "delivery_limit",
                "queue": "bc-sync.exports",
                "time": datetime(2026, 11, 25, 11, 0, tzinfo=UTC),
                "exchange": "moment.events",
                "routing-keys": ["moment.customer.created"],
            }
        ],
        "x-first-death-reason": "delivery_limit",
        "x-first-death-queue": "bc-sync.exports",
        "x-first-death-exchange": "moment.events",
        "x-delivery-count": 0,
    }
    headers.update(over)
    return headers


def test_our_headers_make_the_row() -> None:
    letter = DeadLetter.from_message(BODY, ours())
    row = letter.row()
    assert row["id"] == "ev-1"
    assert (row["org"], row["type"], row["subject"]) == (
        "org-a",
        "moment.customer.created",
        "customer 1864",
    )
    assert (row["code"], row["error_class"], row["attempts"]) == (
        "BC-POSTING-GROUP-MISSING",
        "permanent",
        1,
    )
    assert row["first_failure"] == "2026-11-25T10:00:00.000Z"
    assert row["last_failure"] == "2026-11-25T10:05:00.000Z"


def test_broker_dead_letter_is_delivery_limit_with_details_from_the_body() -> None:
    letter = DeadLetter.from_message(BODY, broker_limit())
    assert (letter.code, letter.error_class) == ("DELIVERY-LIMIT", "delivery_limit")
    assert letter.id == letter.event_id == "ev-1"
    assert letter.org == f.ORG
    assert letter.type == "moment.customer.created"
    assert letter.subject == "customer 1864"
    assert letter.last_failure == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert "delivery limit" in letter.message


def test_delivery_limit_after_the_ladder_names_the_earlier_failure() -> None:
    # Went round the retry ladder (our transient headers, no class), then crashed consumers.
    headers = broker_limit(
        **{
            H.ERROR_CODE: "BC-UNAVAILABLE",
            H.ERROR_MESSAGE: "503 from BC",
            H.ATTEMPT: 2,
            H.FIRST_FAILURE: "2026-11-25T09:00:00.000Z",
        }
    )
    letter = DeadLetter.from_message(BODY, headers)
    assert letter.code == "DELIVERY-LIMIT"
    assert "BC-UNAVAILABLE: 503 from BC" in letter.message
    assert letter.first_failure == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert letter.attempts == 2


def test_body_that_is_not_json_gets_a_stable_hash_id() -> None:
    one = DeadLetter.from_message(b"\x00\xffgarbage", {H.ERROR_CLASS: "invalid"})
    two = DeadLetter.from_message(b"\x00\xffgarbage", {})
    assert one.id == two.id
    assert one.id.startswith("sha256:")
    assert one.event_id is None
    assert two.code == "UNKNOWN"
    detail = one.detail()
    assert detail["envelope"] is None
    assert detail["body"].endswith("garbage")


def test_replay_headers_reset_failures_and_keep_the_routing_key() -> None:
    letter = DeadLetter.from_message(BODY, {**ours(), **broker_limit(), "x-custom": "kept"})
    headers = letter.replay_headers("replay-1", "2026-11-25T12:00:00.000Z")
    assert headers == {
        "x-custom": "kept",
        H.ROUTING_KEY: "moment.customer.created",
        H.REPLAY_ID: "replay-1",
        H.REPLAYED_AT: "2026-11-25T12:00:00.000Z",
    }


def test_replay_of_a_broker_dead_letter_takes_the_routing_key_from_the_event() -> None:
    letter = DeadLetter.from_message(BODY, broker_limit())
    assert letter.replay_headers("r", "t")[H.ROUTING_KEY] == "moment.customer.created"


def test_show_and_rows_mask_secrets() -> None:
    customer = f.customer("1", website="https://u:topsecret1@example.com")
    body = f.body("moment.customer.created", {"customer": customer, "client_secret": "abc123456"})
    headers = ours(**{H.ERROR_MESSAGE: "got 401 for Authorization: Bearer eyJabc.def.ghi"})
    letter = DeadLetter.from_message(body, headers)
    shown = json.dumps(letter.detail()) + json.dumps(letter.row())
    assert "topsecret1" not in shown
    assert "abc123456" not in shown
    assert "eyJabc.def.ghi" not in shown


def test_detail_explains_the_code_and_unknown_codes_too() -> None:
    detail = DeadLetter.from_message(BODY, ours()).detail()
    assert "posting group" in detail["error"]["title"]
    assert detail["error"]["fix"]
    unknown = DeadLetter.from_message(BODY, ours(**{H.ERROR_CODE: "NEW-CODE"})).detail()
    assert unknown["error"]["title"] == "Unknown error code."


def test_parse_time_forms() -> None:
    assert parse_time("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_time("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_time("7d", now=NOW) == NOW - timedelta(days=7)
    assert parse_time("2026-11-20") == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_time("2026-11-20T10:00") == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert parse_time("2026-11-20T10:00+01:00") == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert parse_time("2026-11-20T10:00Z") == datetime(2026, 11, 20, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="relative time"):
        parse_time("last tuesday")


def test_filters_match_exactly_or_by_glob() -> None:
    letter = DeadLetter.from_message(BODY, ours())
    assert Filters().matches(letter)
    assert Filters(org="org-a").matches(letter)
    assert not Filters(org="org-ab").matches(letter)
    assert not Filters(org="org").matches(letter)
    assert Filters(code="BC-*-MISSING", type="moment.customer.*").matches(letter)
    assert not Filters(type="moment.invoice.*").matches(letter)
    assert Filters(ids=frozenset({"ev-1"})).matches(letter)
    assert not Filters(ids=frozenset({"ev-2"})).matches(letter)


def test_time_window_is_half_open_on_the_last_failure() -> None:
    letter = DeadLetter.from_message(BODY, ours())  # last failure 10:05
    at = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    assert Filters(since=at).matches(letter)
    assert not Filters(until=at).matches(letter)
    assert Filters(until=at + timedelta(milliseconds=1)).matches(letter)
    assert not Filters(since=at + timedelta(milliseconds=1)).matches(letter)
    no_time = DeadLetter.from_message(BODY, {})
    assert not Filters(since=at).matches(no_time)


def test_filter_errors_name_the_field() -> None:
    with pytest.raises(FilterError) as e:
        Filters.parse(since="soonish")
    assert e.value.field == "since"
    with pytest.raises(FilterError) as e:
        Filters.parse(limit="ten")
    assert e.value.field == "limit"
    with pytest.raises(FilterError) as e:
        Filters.parse(limit=0)
    assert e.value.field == "limit"
    with pytest.raises(FilterError) as e:
        Filters.parse(since="2026-11-20", until="2026-11-19")
    assert e.value.field == "until"
    parsed = Filters.parse(org="", since="", limit="", ids=["a", ""])
    assert parsed == Filters(ids=frozenset({"a"}))
    assert parsed.describe() == {"ids": ["a"]}


def test_group_counts_largest_first() -> None:
    letters = [
        DeadLetter.from_message(BODY, ours(**{H.ERROR_CODE: code, H.ORG: org}))
        for code, org in [("A", "o1"), ("B", "o1"), ("B", "o2"), ("B", "o1")]
    ]
    assert group_counts(letters, "code") == [("B", 3), ("A", 1)]
    assert group_counts(letters, "org") == [("o1", 3), ("o2", 1)]
    with pytest.raises(FilterError):
        group_counts(letters, "color")


def test_jsonable_handles_amqp_table_values() -> None:
    value = {
        "t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "b": b"bytes",
        "d": Decimal("1.5"),
        "l": [1, (2, 3)],
    }
    assert jsonable(value) == {
        "t": "2026-01-02T03:04:05.000Z",
        "b": "bytes",
        "d": 1.5,
        "l": [1, [2, 3]],
    }
