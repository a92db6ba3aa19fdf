"""The pure expense transform: a posted BC purchase-invoice line on a project → the expense that
Moment imports (DESIGN §7, §11), and where a round starts reading."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from worker.bc.models import PurchaseInvoice, PurchaseInvoicePage
from worker.config.model import parse_config
from worker.events.envelope import build
from worker.events.models import ExpenseImportedData
from worker.sync.expenses import (
    READ_OVERLAP,
    PollResult,
    PollState,
    event_id,
    expense_of,
    expenses_of_page,
    read_start,
    withdrawn_event_id,
)


@dataclass(frozen=True)
class Cfg:
    project_dimension: str | None = "PROJEKT"
    expense_activity: str | None = "Inköp"
    expenses_billable: bool | None = True
    expenses_from_date: date | None = date(2026, 1, 1)


LINE_ID = "5f0c1a2b-0000-4000-8000-000000000001"


def invoice_row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "aa0c1a2b-0000-4000-8000-0000000000aa",
        "number": "108001",
        "status": "Open",
        "vendorNumber": "L1000",
        "vendorName": "Kontorsleverantören AB",
        "vendorInvoiceNumber": "F-2026-0115",
        "invoiceDate": "2026-01-14",
        "postingDate": "2026-01-15",
        "currencyCode": "",
        "lastModifiedDateTime": "2026-01-15T10:00:00Z",
        "purchaseInvoiceLines": [
            {
                "id": LINE_ID,
                "documentId": "aa0c1a2b-0000-4000-8000-0000000000aa",
                "sequence": 10000,
                "lineType": "G_x002F_L_x0020_Account",
                "lineObjectNumber": "6110",
                "description": "Kontorsmaterial projekt",
                "quantity": 2,
                "unitCost": 250,
                "netAmount": 500,
                "amountIncludingTax": 625,
                "dimensionSetLines": [
                    {"id": "d1", "code": "PROJEKT", "valueCode": "4005"},
                    {"id": "d2", "code": "AVDELNING", "valueCode": "200"},
                ],
            },
            {
                "id": "5f0c1a2b-0000-4000-8000-000000000002",
                "description": "Pennor och block",
                "quantity": 1,
                "unitCost": 50,
                "netAmount": 50,
                "dimensionSetLines": [{"id": "d2", "code": "AVDELNING", "valueCode": "100"}],
            },
        ],
    }
    row.update(over)
    return row


def test_a_posted_line_on_a_project_becomes_the_expense_moment_imports() -> None:
    inv = PurchaseInvoice.from_row(invoice_row())
    expense = expense_of(inv, inv.lines[0], Cfg(), "SEK")
    assert expense is not None
    assert expense.model_dump(mode="json") == {
        "id": LINE_ID,
        "project_number": "4005",
        "activity": "Inköp",
        "billable": True,
        "date": "2026-01-15",
        "description": "Kontorsmaterial projekt",
        "quantity": 2.0,
        "unit_cost": 250.0,
        "amount": 500.0,
        "currency_code": "SEK",  # blank in BC = the company's local currency
        "vendor_number": "L1000",
        "vendor_name": "Kontorsleverantören AB",
        "document_number": "108001",
        "vendor_invoice_number": "F-2026-0115",
    }
    # The event body validates against the contract.
    body = json.loads(build("bc.expense.imported", "org-1", ExpenseImportedData(expense=expense)))
    assert body["data"]["expense"]["id"] == LINE_ID


def test_foreign_currency_activity_and_billable_come_through() -> None:
    inv = PurchaseInvoice.from_row(invoice_row(currencyCode="eur"))
    expense = expense_of(
        inv, inv.lines[0], Cfg(expense_activity="Resor", expenses_billable=False), "SEK"
    )
    assert expense is not None
    assert (expense.currency_code, expense.activity, expense.billable) == ("EUR", "Resor", False)


def test_lines_without_the_project_dimension_and_drafts_are_not_expenses() -> None:
    inv = PurchaseInvoice.from_row(invoice_row())
    assert expense_of(inv, inv.lines[1], Cfg(), "SEK") is None
    draft = PurchaseInvoice.from_row(invoice_row(status="Draft"))
    assert expense_of(draft, draft.lines[0], Cfg(), "SEK") is None
    # Another configured dimension: the line's PROJEKT value is not a project any more.
    assert expense_of(inv, inv.lines[0], Cfg(project_dimension="KOSTNADSSTÄLLE"), "SEK") is None
    assert expense_of(inv, inv.lines[0], Cfg(project_dimension=None), "SEK") is None


def test_dimension_codes_match_case_insensitively() -> None:
    inv = PurchaseInvoice.from_row(invoice_row())
    expense = expense_of(inv, inv.lines[0], Cfg(project_dimension="projekt"), "SEK")
    assert expense is not None and expense.project_number == "4005"


def test_a_line_without_an_amount_is_still_published_moment_decides() -> None:
    row = invoice_row()
    row["purchaseInvoiceLines"][0].update(quantity=None, unitCost=None, netAmount=None)
    inv = PurchaseInvoice.from_row(row)
    expense = expense_of(inv, inv.lines[0], Cfg(), "SEK")
    assert expense is not None and expense.amount == 0.0


def test_without_a_posting_date_the_invoice_date_is_used() -> None:
    inv = PurchaseInvoice.from_row(invoice_row(postingDate="0001-01-01"))
    expense = expense_of(inv, inv.lines[0], Cfg(), "SEK")
    assert expense is not None and expense.date == date(2026, 1, 14)


def test_a_page_counts_its_expenses_and_the_lines_left_out() -> None:
    before = invoice_row(number="107999", postingDate="2025-12-31")
    before["purchaseInvoiceLines"] = [
        {**before["purchaseInvoiceLines"][0], "id": "5f0c1a2b-0000-4000-8000-000000000003"}
    ]
    page = PurchaseInvoicePage(
        (PurchaseInvoice.from_row(invoice_row()), PurchaseInvoice.from_row(before)), None
    )
    found = expenses_of_page(page, Cfg(), "SEK")
    # The second invoice lies before the from date: never trust one BC answer about it.
    assert [e.id for e in found.expenses] == [LINE_ID]
    assert found.skipped == 2


@pytest.mark.parametrize(
    ("status", "imported"),
    [
        # PurchInvAggregator.Codeunit.al: posted → Open, Paid, Corrective (or Canceled);
        # unposted → Draft. Anything else is not taken for posted.
        ("Open", True),
        ("Paid", True),
        ("Corrective", True),
        ("Canceled", False),
        ("Draft", False),
        ("In_x0020_Review", False),
        ("_x0020_", False),
        ("SomethingNew", False),
    ],
)
def test_only_posted_invoices_that_are_not_cancelled_are_imported(
    status: str, imported: bool
) -> None:
    inv = PurchaseInvoice.from_row(invoice_row(status=status))
    assert (expense_of(inv, inv.lines[0], Cfg(), "SEK") is not None) is imported


def test_a_page_lists_its_cancelled_invoices_whatever_their_date() -> None:
    old = invoice_row(number="107990", status="Canceled", postingDate="2025-06-30")
    page = PurchaseInvoicePage(
        (
            PurchaseInvoice.from_row(invoice_row(status="Canceled")),
            PurchaseInvoice.from_row(old),
        ),
        None,
    )
    found = expenses_of_page(page, Cfg(), "SEK")
    assert found.expenses == []
    assert [i.number for i in found.canceled] == ["108001", "107990"]
    assert found.skipped == 4


def test_withdrawal_ids_are_stable_and_differ_from_the_import() -> None:
    assert withdrawn_event_id("org-1", LINE_ID) == withdrawn_event_id("org-1", LINE_ID.upper())
    assert withdrawn_event_id("org-1", LINE_ID) != event_id("org-1", LINE_ID)
    assert withdrawn_event_id("org-1", LINE_ID) != withdrawn_event_id("org-2", LINE_ID)


def test_event_ids_are_stable_per_line_and_organization() -> None:
    assert event_id("org-1", LINE_ID) == event_id("org-1", LINE_ID.upper())
    assert event_id("org-1", LINE_ID) != event_id("org-2", LINE_ID)
    assert event_id("org-1", LINE_ID) != event_id("org-1", "5f0c1a2b-0000-4000-8000-000000000002")


def _config(**over: Any) -> Any:
    body = {
        "tenant_id": "7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e",
        "client_secret": "s",
        "environment": "Production",
        "company_name": "CRONUS Sverige AB",
        "project_dimension": "PROJEKT",
        "import_expenses": True,
        "expenses_from_date": "2026-01-01",
        "expense_activity": "Inköp",
        "expenses_billable": True,
        **over,
    }
    return parse_config(body)


def test_a_round_reads_from_the_watermark_less_the_overlap() -> None:
    mark = datetime(2026, 3, 1, 12, tzinfo=UTC)
    state = PollState("o", watermark=mark, from_date="2026-01-01", project_dimension="PROJEKT")
    assert read_start(None, _config()) is None
    assert read_start(state, _config()) == mark - READ_OVERLAP
    # A later from date keeps the watermark (BC's postingDate filter narrows the read) ...
    assert read_start(state, _config(expenses_from_date="2026-02-01")) == mark - READ_OVERLAP
    # ... an earlier one, or another project dimension, reads everything since the from date.
    assert read_start(state, _config(expenses_from_date="2025-12-01")) is None
    assert read_start(state, _config(project_dimension="KOSTNADSSTÄLLE")) is None


def test_paused_until_the_config_is_saved_again() -> None:
    state = PollState("o", paused_at=datetime.now(UTC) - timedelta(hours=1), paused_version=3)
    assert state.paused_for(3)
    assert not state.paused_for(4)
    assert not PollState("o").paused_for(3)


def test_a_result_prints_as_json() -> None:
    result = PollResult("o", published=2, watermark=datetime(2026, 1, 1, tzinfo=UTC))
    assert result.to_dict()["watermark"] == "2026-01-01T00:00:00+00:00"
    assert result.to_dict()["published"] == 2
