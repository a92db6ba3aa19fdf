"""Emulator conformance: cancelling a posted purchase invoice (bc-api.md Corrections 7) and the
reads the expense import makes to find cancellations.

Rules from [BCApps] CorrectPostedPurchInvoice.Codeunit.al (what "Cancel" allows and does),
Utilities/CancelledDocument.Table.al, Integration/Entity/PurchInvAggregator.Codeunit.al (how the
API row's status and lastModifiedDateTime follow) and APIV2PurchaseInvoices.Page.al.
"""

from __future__ import annotations

import pytest

from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.emulator.server import ControlClientError


async def _invoice(bc: BCClient, number: str) -> dict[str, object]:
    rows = (await bc.get(f"purchaseInvoices?$filter=number eq '{number}'")).body["value"]
    assert len(rows) == 1
    return rows[0]  # type: ignore[no-any-return]


async def test_cancel_makes_a_posted_invoice_canceled_and_moves_its_timestamp(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """CorrectPostedPurchInvoice OnRun posts a credit memo applied to the invoice and inserts a
    Cancelled Document; PurchInvAggregator.UpdateStatusIfChanged then Modify(true)s the API row:
    status Canceled (Cancelled wins over Closed), lastModifiedDateTime = the modify time, so a
    change read (`lastModifiedDateTime gt`) finds it. The lines stay readable."""
    before = await _invoice(bc_client, "108001")
    assert before["status"] == "Open"
    every = (await bc_client.get("purchaseInvoices")).body["value"]
    latest = max(str(i["lastModifiedDateTime"]) for i in every)
    answer = await emulator.control.cancel_purchase_invoice(
        at=emulator.company_ref, number="108001"
    )
    after = await _invoice(bc_client, "108001")
    assert (after["id"], after["status"]) == (before["id"], "Canceled")
    assert str(after["lastModifiedDateTime"]) > str(before["lastModifiedDateTime"])
    assert answer["lastModifiedDateTime"] == after["lastModifiedDateTime"]
    changed = await bc_client.get(f"purchaseInvoices?$filter=lastModifiedDateTime gt {latest}")
    assert [i["number"] for i in changed.body["value"]] == ["108001"]
    lines = await bc_client.get(f"purchaseInvoices({before['id']})/purchaseInvoiceLines")
    assert len(lines.body["value"]) == 2

    state = await emulator.control.company_state(emulator.company_ref)
    [memo] = state["purchaseCreditMemos"]
    assert memo["number"] == answer["credit_memo"] == "109001"
    assert (memo["appliesToInvoiceId"], memo["appliesToInvoiceNumber"]) == (before["id"], "108001")


@pytest.mark.parametrize(
    ("number", "text"),
    [
        # TestIfInvoiceIsPaid (PostedInvoiceIsPaidCCancelErr)
        ("108003", "You cannot cancel this posted purchase invoice because it is fully or"),
        # Only posted invoices have the Cancel action (WrongDocumentTypeForCopyDocumentErr)
        ("P-INV100001", "You cannot correct or cancel this type of document."),
    ],
)
async def test_what_cannot_be_cancelled(
    bc_client: BCClient, emulator: EmulatorHandle, number: str, text: str
) -> None:
    before = await _invoice(bc_client, number)
    with pytest.raises(ControlClientError) as refused:
        await emulator.control.cancel_purchase_invoice(at=emulator.company_ref, number=number)
    assert refused.value.status == 400
    assert refused.value.body["code"] == "Application_DialogException"
    assert refused.value.body["error"].startswith(text)
    assert await _invoice(bc_client, number) == before  # nothing changed


async def test_an_invoice_is_cancelled_once(emulator: EmulatorHandle) -> None:
    """TestIfInvoiceIsCorrectedOnce (AlreadyCancelledErr)."""
    await emulator.control.cancel_purchase_invoice(at=emulator.company_ref, number="108002")
    with pytest.raises(ControlClientError) as twice:
        await emulator.control.cancel_purchase_invoice(at=emulator.company_ref, number="108002")
    assert "it has already been canceled" in twice.value.body["error"]


async def test_the_modify_time_can_precede_the_commit(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """The status Modify happens inside the posting transaction; the row is seen at its final
    Commit(): `modified_at` gives the row the (older) modify time."""
    await emulator.control.cancel_purchase_invoice(
        at=emulator.company_ref, number="108002", modified_at="2026-02-03T09:00:00Z"
    )
    after = await _invoice(bc_client, "108002")
    assert (after["status"], after["lastModifiedDateTime"]) == (
        "Canceled",
        "2026-02-03T09:00:00.000Z",
    )


async def test_status_reads_by_id_as_the_import_makes_them(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §5.4: `or` within one field, `$select`; the enum filter on status."""
    one, two = await _invoice(bc_client, "108001"), await _invoice(bc_client, "108002")
    await emulator.control.cancel_purchase_invoice(at=emulator.company_ref, number="108002")
    resp = await bc_client.get(
        f"purchaseInvoices?$filter=id eq {one['id']} or id eq {two['id']}"
        "&$select=id,number,status,lastModifiedDateTime"
    )
    rows = sorted(resp.body["value"], key=lambda r: r["number"])
    assert [(r["number"], r["status"]) for r in rows] == [
        ("108001", "Open"),
        ("108002", "Canceled"),
    ]
    assert set(rows[0]) == {"@odata.etag", "id", "number", "status", "lastModifiedDateTime"}
    canceled = await bc_client.get("purchaseInvoices?$filter=status eq 'Canceled'")
    assert [r["number"] for r in canceled.body["value"]] == ["108002"]


async def test_unposted_purchase_invoices_are_always_draft(emulator: EmulatorHandle) -> None:
    """PurchInvAggregator.InsertOrModifyFromPurchaseHeader sets Status::Draft for every unposted
    invoice (no In Review / Open for purchase drafts, unlike sales): the seed refuses others."""
    with pytest.raises(ControlClientError) as refused:
        await emulator.control.add_purchase_invoice(
            {"number": "108090", "status": "In Review", "lines": []}, at=emulator.company_ref
        )
    assert refused.value.status == 400 and "status" in refused.value.body["error"]
