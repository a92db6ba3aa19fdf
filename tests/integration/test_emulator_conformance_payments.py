"""Emulator conformance: payments of posted sales invoices (bc-api.md Corrections 12).

What BC does, from [BCApps] 29.0: ``remainingAmount`` is computed when read
(``APIV2SalesInvoices.Page.al`` ``GetRemainingAmount``: a draft's total, 0 when canceled, else the
customer ledger entry's remaining amount); the status turns ``Paid`` when the ledger entry closes
and back to ``Open`` when it reopens (``SalesInvoiceAggregator.Codeunit.al``
``SetStatusOptionFromSalesInvoiceHeader`` / ``UpdateStatusIfChanged``), and only that status
change modifies the row, so only it moves ``lastModifiedDateTime`` (and the ETag). A credit memo
applied to the invoice lowers what remains like a payment. Everything goes over real HTTPS.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.emulator.server import ControlClientError

SELECT = "$select=id,number,status,remainingAmount,totalAmountIncludingTax,lastModifiedDateTime"


async def posted_invoice(bc: BCClient, ext: str = "M-PAY-1", price: float = 1000) -> dict[str, Any]:
    """A posted invoice of 1,000 + 25 % VAT = 1,250 (through the API, as the worker does)."""
    draft = await bc.post(
        "salesInvoices",
        {
            "customerNumber": "10000",
            "externalDocumentNumber": ext,
            "salesInvoiceLines": [
                {
                    "lineType": "Account",
                    "lineObjectNumber": "3010",
                    "quantity": 1,
                    "unitPrice": price,
                    "taxCode": "25",
                }
            ],
        },
    )
    assert draft.status == 201, draft.body
    assert (await bc.post(f"salesInvoices({draft.body['id']})/Microsoft.NAV.post")).status == 204
    return await read(bc, draft.body["id"])


async def read(bc: BCClient, invoice_id: str) -> dict[str, Any]:
    resp = await bc.get(f"salesInvoices({invoice_id})")
    assert resp.status == 200, resp.body
    return resp.body  # type: ignore[no-any-return]


async def later() -> None:
    await asyncio.sleep(0.02)  # lastModifiedDateTime has millisecond resolution


async def test_a_draft_shows_its_total_as_remaining_and_takes_no_payment(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """GetRemainingAmount: not posted → Amount Including VAT; only posted invoices have a
    customer ledger entry to apply to."""
    draft = await bc_client.post(
        "salesInvoices",
        {
            "customerNumber": "10000",
            "salesInvoiceLines": [
                {"lineType": "Account", "lineObjectNumber": "3010", "quantity": 2, "unitPrice": 50}
            ],
        },
    )
    assert draft.body["status"] == "Draft"
    assert draft.body["remainingAmount"] == draft.body["totalAmountIncludingTax"] == 125
    with pytest.raises(ControlClientError) as refused:
        await emulator.control.pay_invoice(draft.body["id"], 10, at=emulator.company_ref)
    assert refused.value.status == 400


async def test_a_partial_payment_lowers_remaining_amount_and_changes_nothing_on_the_row(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Corrections 12: a partial payment is seen only by re-reading remainingAmount; status,
    lastModifiedDateTime and the ETag stay."""
    inv = await posted_invoice(bc_client)
    assert (inv["status"], inv["remainingAmount"], inv["totalAmountIncludingTax"]) == (
        "Open",
        1250,
        1250,
    )
    await later()
    await emulator.control.pay_invoice(inv["number"], "400.50", at=emulator.company_ref)
    now = await read(bc_client, inv["id"])
    assert (now["status"], now["remainingAmount"]) == ("Open", 849.5)
    assert now["lastModifiedDateTime"] == inv["lastModifiedDateTime"]
    assert now["@odata.etag"] == inv["@odata.etag"]
    # Nothing a lastModifiedDateTime filter would find.
    changed = await bc_client.get(
        f"salesInvoices?$filter=lastModifiedDateTime gt {inv['lastModifiedDateTime']}&{SELECT}"
    )
    assert changed.body["value"] == []


async def test_paying_the_rest_turns_it_paid_and_moves_last_modified(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Closed ledger entry → status Paid (SetStatusOptionFromSalesInvoiceHeader), the row is
    modified (UpdateStatusIfChanged → OnModify): lastModifiedDateTime and ETag move."""
    inv = await posted_invoice(bc_client)
    await emulator.control.pay_invoice(inv["id"], 1000, at=emulator.company_ref)
    await later()
    await emulator.control.pay_invoice(inv["id"], 250, at=emulator.company_ref)
    now = await read(bc_client, inv["id"])
    assert (now["status"], now["remainingAmount"]) == ("Paid", 0)
    assert now["lastModifiedDateTime"] > inv["lastModifiedDateTime"]
    assert now["@odata.etag"] != inv["@odata.etag"]
    found = await bc_client.get(
        "salesInvoices?$filter=lastModifiedDateTime gt "
        f"{inv['lastModifiedDateTime']} and (status eq 'Open' or status eq 'Paid')&{SELECT}"
    )
    [row] = found.body["value"]
    assert (row["id"], row["status"], row["remainingAmount"]) == (inv["id"], "Paid", 0)
    assert set(row) == {
        "@odata.etag",
        "id",
        "number",
        "status",
        "remainingAmount",
        "totalAmountIncludingTax",
        "lastModifiedDateTime",
    }


async def test_reversing_a_payment_of_a_paid_invoice_opens_it_again(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """The ledger entry reopens: status back to Open, which is a status change (the row's
    lastModifiedDateTime moves again); the remaining amount grows back."""
    inv = await posted_invoice(bc_client)
    first = await emulator.control.pay_invoice(inv["id"], 250, at=emulator.company_ref)
    second = await emulator.control.pay_invoice(inv["id"], 1000, at=emulator.company_ref)
    paid = await read(bc_client, inv["id"])
    assert paid["status"] == "Paid"
    await later()
    answer = await emulator.control.reverse_payment(
        second["application"]["id"], at=emulator.company_ref
    )
    assert answer["application"]["reversedAt"] is not None
    now = await read(bc_client, inv["id"])
    assert (now["status"], now["remainingAmount"]) == ("Open", 1000)
    assert now["lastModifiedDateTime"] > paid["lastModifiedDateTime"]
    # A partial payment reversed on the open invoice: the amount only.
    await later()
    await emulator.control.reverse_payment(first["application"]["id"], at=emulator.company_ref)
    again = await read(bc_client, inv["id"])
    assert (again["status"], again["remainingAmount"]) == ("Open", 1250)
    assert again["lastModifiedDateTime"] == now["lastModifiedDateTime"]
    with pytest.raises(ControlClientError) as twice:
        await emulator.control.reverse_payment(first["application"]["id"], at=emulator.company_ref)
    assert twice.value.status == 400


async def test_an_applied_credit_memo_lowers_remaining_like_a_payment(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesInvoiceHeader "Closed": "also selected if a credit memo for the remaining amount
    has been applied"; a partial credit lowers the remaining amount only."""
    inv = await posted_invoice(bc_client)
    await emulator.control.pay_invoice(
        inv["id"], 250, kind="credit_memo", reference="KR-1", at=emulator.company_ref
    )
    part = await read(bc_client, inv["id"])
    assert (part["status"], part["remainingAmount"]) == ("Open", 1000)
    assert part["lastModifiedDateTime"] == inv["lastModifiedDateTime"]
    await later()
    answer = await emulator.control.pay_invoice(
        inv["id"], 1000, kind="credit_memo", at=emulator.company_ref
    )
    assert answer["invoice"]["status"] == "Paid"
    assert [a["kind"] for a in answer["invoice"]["applications"]] == ["credit_memo"] * 2
    assert (await read(bc_client, inv["id"]))["status"] == "Paid"


async def test_more_than_what_remains_is_refused(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Stricter than BC (which would leave the excess open on the payment's own entry): the
    invoice never shows a negative remaining amount, and nothing is applied."""
    inv = await posted_invoice(bc_client)
    await emulator.control.pay_invoice(inv["id"], 1000, at=emulator.company_ref)
    for amount in ("250.01", "0", "-5", "x"):
        with pytest.raises(ControlClientError) as refused:
            await emulator.control.pay_invoice(inv["id"], amount, at=emulator.company_ref)
        assert refused.value.status == 400
    assert (await read(bc_client, inv["id"]))["remainingAmount"] == 250


async def test_an_invoice_posted_by_hand_follows_the_api_rules(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """The control call creates and posts through the API's own code: posted series number,
    status Open, the total as remaining amount."""
    state = await emulator.control.add_sales_invoice(
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "1864",
            "salesInvoiceLines": [
                {"lineType": "Account", "lineObjectNumber": "3010", "quantity": 4, "unitPrice": 50}
            ],
        },
        at=emulator.company_ref,
    )
    assert (state["status"], state["remainingAmount"]) == ("Open", 250)
    row = await read(bc_client, state["id"])
    assert row["number"] == state["number"] and row["externalDocumentNumber"] == "1864"
    with pytest.raises(ControlClientError) as refused:
        await emulator.control.add_sales_invoice(
            {"customerNumber": "NOPE", "salesInvoiceLines": []}, at=emulator.company_ref
        )
    assert refused.value.status == 400


async def test_a_filter_of_more_than_100_nodes_is_refused(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """BC's OData stack (MaxNodeCount 100; secondary source in odata_filter.py): 25 ``id eq``
    terms joined by ``or`` are 99 nodes and pass, 26 are 103 and fail. The payment import asks
    for 20 ids a request."""
    inv = await posted_invoice(bc_client)
    others = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 26)]

    def ids(n: int) -> str:
        return " or ".join(f"id eq {i}" for i in [inv["id"], *others][:n])

    ok = await bc_client.get(f"salesInvoices?$filter={ids(25)}&$select=id,remainingAmount")
    assert ok.status == 200
    assert [(r["id"], r["remainingAmount"]) for r in ok.body["value"]] == [(inv["id"], 1250)]
    refused = await bc_client.get(f"salesInvoices?$filter={ids(26)}&$select=id")
    assert refused.status == 400
    assert "node count limit of '100'" in refused.error_message
