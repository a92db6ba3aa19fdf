"""Credit notes, pure parts: which documents are credit notes, the credit memo payload and its
signs, the BC answers the export recognises, and the read model (no I/O)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support import factories as f
from worker.bc import BcValidationError
from worker.bc.models import SalesCreditMemo
from worker.events.envelope import Event
from worker.events.handlers import subject_of
from worker.events.models import Envelope, Invoice, InvoiceData, InvoiceLine
from worker.sync import bc_answers
from worker.sync.transforms import credit_line_payload, credit_memo_payload


def _line(quantity: float, price: float, discount: float = 0) -> dict[str, Any]:
    return {
        "description": "x",
        "quantity": quantity,
        "unit_price": price,
        "discount_percent": discount,
        "account_number": "3010",
        "vat_code": "25",
    }


def _doc(*lines: dict[str, Any], **over: Any) -> Invoice:
    return Invoice.model_validate(f.invoice("K-1", lines=list(lines), **over))


# ---- which documents are credit notes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "lines", "credit"),
    [
        ({}, [_line(10, 1200)], False),
        ({"kind": "credit_note"}, [_line(-2, 1200)], True),
        ({}, [_line(-2, 1200)], True),  # negative total without kind
        ({"kind": "invoice"}, [_line(1, -500)], True),  # BC cannot post it as an invoice
        ({}, [_line(3, 100), _line(-1, 100)], False),  # a negative line, positive total
        ({}, [_line(1, 100), _line(-1, 100)], False),  # total 0: an invoice (BC posts it)
        ({"kind": "credit_note"}, [_line(1, 0)], True),  # total 0 with kind: a credit note
    ],
)
def test_a_credit_note_is_said_so_or_negative(
    over: dict[str, Any], lines: list[dict[str, Any]], credit: bool
) -> None:
    assert _doc(*lines, **over).is_credit_note is credit


def test_the_total_is_exact_and_takes_the_discount() -> None:
    doc = _doc(_line(3, 0.1), _line(-1, 0.3, discount=50))
    assert doc.total == Decimal("0.15")  # would not be 0.15 in floats
    assert not doc.is_credit_note
    with pytest.raises(ValidationError, match="total must not be positive"):
        _doc(_line(3, 0.1), kind="credit_note")


def test_credited_invoice_only_on_a_credit_note() -> None:
    credited = {"id": "i-1864", "number": "1864"}
    note = _doc(_line(-1, 100), credited_invoice=credited)
    assert note.credited_invoice is not None and note.credited_invoice.number == "1864"
    with pytest.raises(ValidationError, match="credited_invoice is only for credit notes"):
        _doc(_line(1, 100), credited_invoice=credited)


def test_a_credit_note_event_is_a_credit_note_subject() -> None:
    data = {"invoice": f.invoice("K-9", lines=[_line(-1, 100)])}
    envelope = Envelope.model_validate(f.envelope("moment.invoice.created", data))
    event = Event(envelope, InvoiceData.model_validate(data))
    assert subject_of(event) == ("credit_note", "i-K-9", "K-9")
    plain = {"invoice": f.invoice("1864")}
    event = Event(
        Envelope.model_validate(f.envelope("moment.invoice.created", plain)),
        InvoiceData.model_validate(plain),
    )
    assert subject_of(event) == ("invoice", "i-1864", "1864")


# ---- the credit memo payload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "price", "bc_quantity", "bc_price"),
    [
        (-2, 100, 2, 100),  # credited by a negative quantity
        (2, -100, 2, 100),  # credited by a negative price
        (2, 100, -2, 100),  # a charge within the credit note lowers the credit
        (-2, -100, -2, 100),  # both negative: a charge too
        (-2, 0, 2, 0),  # no amount: the quantity unsigned
        (2, 0, 2, 0),
    ],
)
def test_a_credit_memo_line_is_minus_the_moment_line(
    quantity: float, price: float, bc_quantity: float, bc_price: float
) -> None:
    line = InvoiceLine.model_validate(_line(quantity, price))
    body = credit_line_payload(line, 10000, "credit note K-1")
    assert (body["quantity"], body["unitPrice"]) == (bc_quantity, bc_price)
    assert body["quantity"] * body["unitPrice"] == -(quantity * price)
    assert str(body["quantity"]) != "-0.0"


def test_the_credit_memo_total_is_minus_the_credit_notes_whatever_the_signs() -> None:
    doc = _doc(
        _line(-3, 1000),
        _line(2, -250, discount=10),
        _line(1, 400),  # charged
        _line(-1, -50),  # charged, written with two minus signs
        kind="credit_note",
    )
    body = credit_memo_payload(doc, customer_number="10000", local_currency="SEK")
    total = sum(
        Decimal(str(x["quantity"]))
        * Decimal(str(x["unitPrice"]))
        * (100 - Decimal(str(x["discountPercent"])))
        / 100
        for x in body["salesCreditMemoLines"]
    )
    assert total == -doc.total == Decimal("3000")


def test_the_credit_memo_payload_has_the_pages_fields() -> None:
    """APIV2SalesCreditMemos.Page.al: ``creditMemoDate``, no ``customerPurchaseOrderReference``;
    the external document number upper-cased (Code[35])."""
    doc = Invoice.model_validate(f.invoice("k-77", lines=[_line(-1, 100)], currency_code="SEK"))
    body = credit_memo_payload(doc, customer_number="10000", local_currency="SEK")
    assert body["externalDocumentNumber"] == "K-77"
    assert body["creditMemoDate"] == body["postingDate"] == "2026-11-20"
    assert "customerPurchaseOrderReference" not in body and "invoiceDate" not in body
    assert body["currencyCode"] == ""
    [line] = body["salesCreditMemoLines"]
    assert (line["sequence"], line["lineType"], line["taxCode"]) == (10000, "Account", "25")


# ---- BC's answers and the read model -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "posted", "not_posted_invoice", "no_entry"),
    [
        (
            "The action can be applied to a draft credit memo only.  CorrelationId:  x.",
            True,
            False,
            False,
        ),
        ("The action can be applied to a posted credit memo only.", False, False, False),
        ('The "invoiceId" does not match to an Invoice.  CorrelationId:  x.', False, True, False),
        (
            "There is no Cust. Ledger Entry within the filter.  Filters: Document No.: 103001",
            False,
            False,
            True,
        ),
        (
            'The "invoiceId" and "invoiceNumber" do not match to a specific Invoice.',
            False,
            False,
            False,
        ),
    ],
)
def test_credit_memo_answers_are_told_apart(
    message: str, posted: bool, not_posted_invoice: bool, no_entry: bool
) -> None:
    exc = BcValidationError(message, status=400)
    assert (
        bc_answers.not_a_draft(exc),
        bc_answers.invoice_not_posted(exc),
        bc_answers.no_open_invoice_entry(exc),
    ) == (posted, not_posted_invoice, no_entry)
    assert bc_answers.approval_required(
        BcValidationError(
            "Sales Credit Memo S-CR100001 must be approved and released before you can perform "
            "this action.",
            status=400,
        )
    )


def test_a_credit_memo_row_reads_its_application() -> None:
    row = {
        "id": "m-1",
        "number": "104001",
        "externalDocumentNumber": "K-1",
        "customerNumber": "10000",
        "status": "Paid",
        "creditMemoDate": "2026-11-20",
        "currencyCode": "SEK",
        "totalAmountExcludingTax": 2400,
        "totalAmountIncludingTax": 3000,
        "invoiceId": "i-guid",
        "invoiceNumber": "103001",
        "salesCreditMemoLines": [{"id": "l-1", "sequence": 10000, "lineType": "Account"}],
    }
    memo = SalesCreditMemo.from_row(row)
    assert memo.surely_posted and memo.applied and memo.invoice_number == "103001"
    assert memo.total_amount_including_tax == Decimal(3000) and memo.lines[0].id == "l-1"
    unapplied = SalesCreditMemo.from_row(
        {**row, "status": "Open", "invoiceId": "00000000-0000-0000-0000-000000000000"}
    )
    assert not unapplied.applied and not unapplied.surely_posted and not unapplied.is_draft
