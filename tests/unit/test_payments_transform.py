"""The payment import's rules without I/O: the dialog's two fields, and what one invoice read
in BC means for Moment (which event, with which amounts and id, or none)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.support.factories import dialog
from worker.bc.models import SalesInvoiceBalance
from worker.bc.odata import MAX_OR_TERMS, Guid, one_of
from worker.config.model import (
    ConfigValidationError,
    FieldError,
    IntegrationConfig,
    parse_config,
)
from worker.events.envelope import build
from worker.events.models import InvoicePaidData, InvoicePaymentUpdatedData
from worker.sync.payments import (
    PAID_EVENT,
    UPDATED_EVENT,
    Change,
    Followed,
    Seen,
    event_id,
    observe,
)

ORG = "org-acme"
AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
FROM = date(2026, 1, 1)
BC_ID = "5f1c2a34-0000-4000-8000-00000000a001"


# --- the dialog --------------------------------------------------------------------------------


def errors_of(data: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(ConfigValidationError) as exc:
        parse_config(data)
    return exc.value.errors


@pytest.mark.parametrize("value", ["missing", None, "  "])
def test_import_payments_needs_its_from_date(value: object) -> None:
    data = dialog(import_payments=True)
    if value != "missing":
        data["payments_from_date"] = value
    assert errors_of(data) == [
        {
            "field": "payments_from_date",
            "code": "required",
            "message": "From date for payments is required when Import payments is on: payments "
            "are imported for the invoices posted in Business Central on or after it.",
        }
    ]
    data["import_payments"] = False
    assert parse_config(data).payments_from_date is None


def test_the_payment_fields_are_kept_and_shown() -> None:
    config = parse_config(dialog(import_payments=True, payments_from_date=" 2026-03-01 "))
    assert (config.import_payments, config.payments_from_date) == (True, date(2026, 3, 1))
    public = config.to_public_dict()
    assert (public["import_payments"], public["payments_from_date"]) == (True, "2026-03-01")
    again = IntegrationConfig.from_stored(config.to_storage_dict(), "secret")
    assert again.payments_from_date == date(2026, 3, 1)
    # A config saved before the toggle existed reads as off.
    old = {k: v for k, v in config.to_storage_dict().items() if "payment" not in k}
    assert IntegrationConfig.from_stored(old, "secret").import_payments is False


@pytest.mark.parametrize("bad", ["2026-02-30", "1.3.2026", 20260301, True])
def test_a_bad_from_date_for_payments_names_the_field(bad: object) -> None:
    [error] = errors_of(dialog(import_payments=True, payments_from_date=bad))
    assert error["field"] == "payments_from_date"
    assert error["message"] == "From date for payments must be a date such as 2026-01-01."


# --- one invoice read in BC ----------------------------------------------------------------------


def followed(status: str = "Open", remaining: str | None = "1250.00", seq: int = 0) -> Followed:
    return Followed(
        bc_id=BC_ID,
        moment_id="i-1864",
        moment_number="1864",
        bc_number="103001",
        currency_code="SEK",
        total=Decimal("1250.00"),
        status=status,
        remaining=Decimal(remaining) if remaining is not None else None,
        change_seq=seq,
    )


def in_bc(status: str = "Open", remaining: Any = 1250, **over: Any) -> SalesInvoiceBalance:
    row: dict[str, Any] = {
        "id": BC_ID.upper(),
        "number": "103001",
        "externalDocumentNumber": "1864",
        "customerNumber": "10000",
        "status": status,
        "postingDate": "2026-11-20",
        "currencyCode": "SEK",
        "totalAmountIncludingTax": 1250,
        "remainingAmount": remaining,
        "lastModifiedDateTime": "2026-11-30T16:02:11.123Z",
        **over,
    }
    return SalesInvoiceBalance.from_row(row)


def change(outcome: Change | Seen) -> Change:
    assert isinstance(outcome, Change), outcome
    return outcome


def test_a_partial_payment_is_one_payment_updated() -> None:
    c = change(observe(ORG, followed(), in_bc(remaining=849.5), from_date=FROM, at=AT))
    assert c.event_type == UPDATED_EVENT
    assert isinstance(c.data, InvoicePaymentUpdatedData)
    assert c.data.model_dump(mode="json") == {
        "moment_id": "i-1864",
        "moment_number": "1864",
        "bc_id": BC_ID,
        "bc_number": "103001",
        "amount": 1250.0,
        "currency_code": "SEK",
        "remaining_amount": 849.5,
        "previous_remaining_amount": 1250.0,
        "paid_amount": 400.5,
        "status": "Open",
        "previous_status": "Open",
        "seen_at": "2026-12-01T09:30:00Z",
    }
    assert (c.seen.status, c.seen.remaining, c.seen.seq, c.seen.previous_seq) == (
        "Open",
        Decimal("849.50"),
        1,
        0,
    )
    # What the broker gets is a valid event of the contract.
    type_, body, message_id = c.item(ORG)
    assert (type_, message_id) == (UPDATED_EVENT, c.event_id)
    assert b'"remaining_amount":849.5' in body


def test_nothing_changed_is_nothing_to_report() -> None:
    seen = observe(ORG, followed(), in_bc(), from_date=FROM, at=AT)
    assert isinstance(seen, Seen) and seen.status is None and seen.seq is None
    assert seen.posting_date == date(2026, 11, 20)
    quiet = observe(ORG, followed("Paid", "0.00", 2), in_bc("Paid", 0), from_date=FROM, at=AT)
    assert isinstance(quiet, Seen) and quiet.seq is None


def test_paid_carries_bcs_date_or_the_day_it_was_seen() -> None:
    c = change(observe(ORG, followed(), in_bc("Paid", 0), from_date=FROM, at=AT))
    assert c.event_type == PAID_EVENT and isinstance(c.data, InvoicePaidData)
    assert (c.data.amount, c.data.paid_date, c.data.paid_date_source) == (
        1250.0,
        date(2026, 11, 30),
        "bc_last_modified",
    )
    blind = change(
        observe(ORG, followed(), in_bc("Paid", 0, lastModifiedDateTime=None), from_date=FROM, at=AT)
    )
    assert isinstance(blind.data, InvoicePaidData)
    assert (blind.data.paid_date, blind.data.paid_date_source) == (date(2026, 12, 1), "seen")
    build(PAID_EVENT, ORG, blind.data, id_=blind.event_id)  # valid against the contract


def test_a_reversed_payment_reopens_a_paid_invoice() -> None:
    c = change(
        observe(ORG, followed("Paid", "0.00", 2), in_bc(remaining=250), from_date=FROM, at=AT)
    )
    assert c.event_type == UPDATED_EVENT and isinstance(c.data, InvoicePaymentUpdatedData)
    assert (c.data.status, c.data.previous_status) == ("Open", "Paid")
    assert (c.data.remaining_amount, c.data.previous_remaining_amount, c.data.paid_amount) == (
        250.0,
        0.0,
        1000.0,
    )
    assert c.seen.seq == 3


def test_event_ids_are_stable_per_change_and_differ_between_changes() -> None:
    a = change(observe(ORG, followed(), in_bc(remaining=1000), from_date=FROM, at=AT))
    again = change(observe(ORG, followed(), in_bc(remaining=1000), from_date=FROM, at=AT))
    assert a.event_id == again.event_id == event_id(ORG, BC_ID, 1, "Open", Decimal(1000))
    # The same state reached again later (paid back after a reversal) is a new change.
    later = change(observe(ORG, followed(seq=4), in_bc(remaining=1000), from_date=FROM, at=AT))
    assert later.event_id != a.event_id
    assert event_id("other-org", BC_ID, 1, "Open", Decimal(1000)) != a.event_id


@pytest.mark.parametrize(
    ("bc", "why"),
    [
        (in_bc(postingDate="2025-12-31", remaining=0, status="Paid"), "before the from date"),
        (in_bc("Draft"), "a draft"),
        (in_bc(remaining=None), "no remaining amount"),
    ],
)
def test_nothing_is_reported_for(bc: SalesInvoiceBalance, why: str) -> None:
    seen = observe(ORG, followed(), bc, from_date=FROM, at=AT)
    assert isinstance(seen, Seen) and seen.seq is None and seen.status is None, why


def test_an_export_recorded_without_totals_compares_with_bcs_total() -> None:
    unknown = followed(remaining=None)
    assert isinstance(observe(ORG, unknown, in_bc(), from_date=FROM, at=AT), Seen)
    c = change(observe(ORG, unknown, in_bc(remaining=1000), from_date=FROM, at=AT))
    assert isinstance(c.data, InvoicePaymentUpdatedData)
    assert c.data.previous_remaining_amount == 1250.0


def test_a_canceled_invoice_is_no_longer_followed_and_not_reported() -> None:
    seen = observe(ORG, followed(), in_bc("Canceled", 0), from_date=FROM, at=AT)
    assert isinstance(seen, Seen) and (seen.status, seen.seq) == ("Canceled", None)


def test_re_reads_stay_under_bcs_filter_node_limit() -> None:
    ids = [Guid(f"00000000-0000-4000-8000-{n:012d}") for n in range(MAX_OR_TERMS)]
    text = one_of("id", ids)
    assert text.count(" or ") == MAX_OR_TERMS - 1 and text.startswith("(")
    assert 3 * MAX_OR_TERMS + (MAX_OR_TERMS - 1) <= 100 - 10  # room for the rest of a filter
    assert one_of("status", ["Open"]) == "status eq 'Open'"
