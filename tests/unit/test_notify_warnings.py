"""Warnings in a digest: objects transferred with a value left out, grouped like failures, in a
section of their own, never counted as failures or resolutions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.errors import CATALOGUE
from worker.events.models import IntegrationFailedData
from worker.notify.digest import compose, render_html, render_text
from worker.notify.store import FAILURE, RESOLVED, WAITING, WARNING, Item

NOW = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
START = NOW - timedelta(minutes=15)
_ids = iter(range(1, 1_000_000))
VAT = "BC-VAT-NUMBER-LEFT-OUT"
PHONE = "BC-PHONE-LEFT-OUT"


def item(kind: str, number: str, code: str | None, message: str | None = None) -> Item:
    return Item(
        next(_ids), kind, code, "customer", f"c-{number}", number, "ev", message or "m", NOW
    )


def test_warnings_have_their_own_section_with_fix_and_examples() -> None:
    items = [
        item(WARNING, "50101", VAT, "Customer 50101: VAT 'X' left out."),
        item(WARNING, "50102", VAT, "Customer 50102: VAT 'Y' left out."),
        item(WARNING, "50102", PHONE, "Customer 50102: phone 'växel' left out."),
    ]
    content = compose("org-acme", items, START, NOW)
    assert content.failed_total == 0 and content.resolved_total == 0
    assert [(g.code, g.count) for g in content.warnings] == [(VAT, 2), (PHONE, 1)]
    assert content.warned_total == 3
    assert content.subject == (
        "Business Central integration: 3 values left out, please correct in Moment"
    )
    text = render_text(content)
    assert "3 values that Business Central does not accept were left out" in text
    assert CATALOGUE[VAT].fix in text and CATALOGUE[PHONE].title in text
    assert "Customer 50102: phone 'växel' left out." in text
    assert "could not be transferred" not in text
    assert "Failed items are kept" not in text
    html = render_html(content)
    assert "Customer 50101: VAT &#x27;X&#x27; left out." in html


def test_the_same_object_warned_twice_is_one_line_with_the_latest_message() -> None:
    items = [
        item(WARNING, "50101", VAT, "first"),
        item(WARNING, "50101", VAT, "second"),
    ]
    content = compose("org-acme", items, START, NOW)
    [group] = content.warnings
    assert group.count == 1 and [e.message for e in group.examples] == ["second"]


def test_warnings_stand_apart_from_failures_and_resolutions() -> None:
    """A customer resolved and warned about in one digest is both: the warning does not hide the
    resolution, and a warning is never shown as resolved or failed."""
    items = [
        item(FAILURE, "50101", "BC-POSTING-GROUP-MISSING"),
        item(RESOLVED, "50101", None),
        item(WARNING, "50101", PHONE, "phone left out"),
        item(FAILURE, "50103", "BC-POSTING-GROUP-MISSING"),
    ]
    content = compose("org-acme", items, START, NOW)
    assert content.failed_total == 1 and content.resolved_total == 1
    assert content.warned_total == 1
    assert content.subject == (
        "Business Central integration: 1 problem needs your attention, 1 value left out, 1 resolved"
    )
    text = render_text(content)
    assert text.index("could not be transferred") < text.index("Also, 1 value")
    assert text.index("Also, 1 value") < text.index("Resolved since the last message")
    assert "Failed items are kept" in text
    assert "Business Central integration: 1 problem needs your attention" in content.subject
    assert "1 item could not be transferred" in content.summary
    assert "1 value Business Central does not accept was left out" in content.summary


def test_secrets_are_masked_in_warnings_and_moment_users_get_them() -> None:
    items = [item(WARNING, "50101", VAT, "value s3cret-value left out")]
    content = compose("org-acme", items, START, NOW, secrets=["s3cret-value"])
    assert "s3cret-value" not in render_text(content) + render_html(content)
    data = content.event_data("u-17")
    assert isinstance(data, IntegrationFailedData)
    assert data.failures == [] and [g.code for g in data.warnings] == [VAT]
    assert "[REDACTED]" in data.warnings[0].examples[0].message


def test_an_invoice_waiting_for_approval_has_its_own_section_not_a_failure() -> None:
    """An invoice held for approval in BC needs a person there: the digest says so in its own
    words (not "left out", not a failure to replay), and a failure next to it stays a failure."""
    approval = "BC-INVOICE-AWAITING-APPROVAL"
    waiting = Item(
        next(_ids),
        WAITING,
        approval,
        "invoice",
        "i-1864",
        "1864",
        "ev",
        "Invoice 1864 is waiting for approval in Business Central.",
        NOW,
    )
    content = compose("org-acme", [waiting], START, NOW)
    assert content.failed_total == 0 and content.warned_total == 0
    assert [(g.code, g.count) for g in content.waiting] == [(approval, 1)]
    assert (
        content.subject == "Business Central integration: 1 item waits for you in Business Central"
    )
    text = render_text(content)
    assert "1 item is waiting for someone to act in Business Central" in text
    assert "Invoice 1864 is waiting for approval in Business Central." in text
    assert CATALOGUE[approval].fix in text
    assert "left out" not in text and "Failed items are kept" not in text
    assert "Invoice 1864 is waiting for approval" in render_html(content)

    both = compose("org-acme", [waiting, item(FAILURE, "50101", "BC-VALIDATION")], START, NOW)
    assert both.failed_total == 1 and both.waiting_total == 1
    assert "1 waiting in Business Central" in both.subject
