"""What a digest says: grouping, counting, examples, resolutions and safe texts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from worker.errors import CATALOGUE
from worker.events.envelope import build
from worker.notify.digest import MAX_EXAMPLES, compose, render_html, render_text
from worker.notify.mail import build_message, digest_message_id, parse_smtp_url
from worker.notify.store import FAILURE, RESOLVED, Item, due_at

NOW = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
START = NOW - timedelta(minutes=15)

_next_id = iter(range(1, 1_000_000))


def failure(
    number: str,
    code: str = "BC-ACCOUNT-MISSING",
    message: str = "G/L account 9999 is missing.",
    object_type: str = "invoice",
) -> Item:
    return Item(
        next(_next_id), FAILURE, code, object_type, f"id-{number}", number, "ev", message, NOW
    )


def resolved(number: str, object_type: str = "invoice") -> Item:
    return Item(
        next(_next_id), RESOLVED, None, object_type, f"id-{number}", number, "ev", None, NOW
    )


def test_counts_objects_per_code_once_even_when_reported_on_every_attempt() -> None:
    items = [failure("1"), failure("1"), failure("2"), failure("3", "BC-CUSTOMER-MISSING")]
    content = compose("org", items, START, NOW)
    assert [(g.code, g.count) for g in content.failures] == [
        ("BC-ACCOUNT-MISSING", 2),
        ("BC-CUSTOMER-MISSING", 1),
    ]
    assert content.failed_total == 3
    assert content.failures[0].fix == CATALOGUE["BC-ACCOUNT-MISSING"].fix


def test_at_most_twenty_examples_and_every_code_has_one() -> None:
    items = [failure(str(i)) for i in range(500)] + [
        failure(f"c{i}", "BC-POSTING-GROUP-MISSING", object_type="customer") for i in range(3)
    ]
    content = compose("org", items, START, NOW)
    examples = [e for g in content.failures for e in g.examples]
    assert len(examples) == MAX_EXAMPLES
    assert all(g.examples for g in content.failures)
    text = render_text(content)
    assert "Affected: 500 (error code BC-ACCOUNT-MISSING)" in text
    assert "… and 483 more." in text


def test_resolved_objects_are_listed_and_drop_out_of_the_failures() -> None:
    items = [failure("1"), failure("2"), resolved("1"), resolved("3"), failure("3")]
    content = compose("org", items, START, NOW)
    # 1 failed then succeeded: resolved; 3 succeeded then failed again: a failure.
    assert [e.moment_number for e in content.resolved] == ["1"]
    assert sorted(e.moment_number or "" for g in content.failures for e in g.examples) == [
        "2",
        "3",
    ]
    assert "Invoice 1 was transferred to Business Central after all." in render_text(content)


def test_only_resolutions_make_a_short_good_news_subject() -> None:
    content = compose("org", [resolved("1"), resolved("2")], START, NOW)
    assert content.subject == "Business Central integration: 2 problems resolved"
    assert content.failures == []


def test_an_unknown_code_gets_a_neutral_text_not_a_wrong_one() -> None:
    content = compose(
        "org", [failure("x", "EXPENSE-POLL-PAUSED", object_type="expense")], START, NOW
    )
    group = content.failures[0]
    assert group.title != CATALOGUE["BC-VALIDATION"].title
    assert "Expense import (paused until the integration settings are saved again) x:" in (
        render_text(content)
    )


def test_messages_are_one_line_without_stack_traces_secrets_or_markup() -> None:
    message = (
        "BC said <b>no</b> & Bearer abc.def.ghi\nTraceback (most recent call last):\n"
        '  File "worker/x.py", line 1'
    )
    content = compose("org", [failure("1", message=message)], START, NOW, secrets=["s3cr3t!"])
    text, html = render_text(content), render_html(content)
    for body in (text, html):
        assert "Traceback" not in body and "abc.def.ghi" not in body
    assert "<b>no</b>" not in html and "&lt;b&gt;no&lt;/b&gt; &amp;" in html
    masked = compose(
        "org", [failure("1", message="secret is s3cr3t!")], START, NOW, secrets=["s3cr3t!"]
    )
    assert "s3cr3t!" not in render_text(masked)


def test_the_event_data_follows_the_contract() -> None:
    content = compose("org-1", [failure("1"), resolved("2")], START, NOW)
    body = json.loads(build("bc.integration.failed", "org-1", content.event_data("u-17")))
    assert body["data"]["recipient_user_id"] == "u-17"
    assert body["data"]["failures"][0]["count"] == 1
    assert body["data"]["summary"]


def test_the_mail_has_text_and_html_and_a_stable_message_id() -> None:
    content = compose("org", [failure("1")], START, NOW)
    mid = digest_message_id("org", 7, NOW, "bc-sync@moment.example")
    assert mid == "<20261125T101500Z.org.digest-7@moment.example>"
    msg = build_message(
        content, sender="bc-sync@moment.example", to=["a@x.se", "b@x.se"], message_id=mid
    )
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] == mid and msg["To"] == "a@x.se, b@x.se"
    assert msg.get_body(preferencelist=("plain",)) is not None
    assert msg.get_body(preferencelist=("html",)) is not None


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("smtp://mail.example:2525", "mail.example", 2525, False, None, None),
        ("smtp://u%40x:p%3Aw@mail.example", "mail.example", 25, False, "u@x", "p:w"),
        ("smtps://u:p@mail.example", "mail.example", 465, True, "u", "p"),
    ],
)
def test_smtp_urls(
    url: str, host: str, port: int, tls: bool, user: str | None, password: str | None
) -> None:
    target = parse_smtp_url(url)
    assert (target.hostname, target.port, target.use_tls) == (host, port, tls)
    assert (target.username, target.password) == (user, password)


def test_a_bad_smtp_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as err:
        parse_smtp_url("http://u:hunter22@mail")
    assert "hunter22" not in str(err.value)


def test_first_failure_after_quiet_period_waits_the_short_delay_then_the_window() -> None:
    first = NOW
    assert due_at(first, None, 60, 900) == first + timedelta(seconds=60)
    # A digest went out 5 minutes ago: the next one waits for the rest of the window.
    last = NOW - timedelta(minutes=5)
    assert due_at(first, last, 60, 900) == last + timedelta(seconds=900)
    # Quiet for longer than the window: the short delay again.
    assert due_at(first, NOW - timedelta(hours=1), 60, 900) == first + timedelta(seconds=60)
