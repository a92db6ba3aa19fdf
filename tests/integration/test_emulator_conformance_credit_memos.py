"""Emulator conformance: sales credit memos as Microsoft's AL source defines them (bc-api.md,
"Corrections checked against the AL source" 11), and the refusal of a negative sales invoice.

Each test names the AL file the rule comes from ([BCApps] HEAD, version 29.0); everything goes
over real HTTPS with a real token, the way the worker talks to BC.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.support.conformance import line, new_credit_memo, new_invoice

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"

# APIV2SalesCreditMemos.Page.al (page 30038), its fields in control order.
CREDIT_MEMO_FIELDS = [
    "id",
    "number",
    "externalDocumentNumber",
    "creditMemoDate",
    "postingDate",
    "dueDate",
    "customerId",
    "customerNumber",
    "customerName",
    "billToName",
    "billToCustomerId",
    "billToCustomerNumber",
    "sellToAddressLine1",
    "sellToAddressLine2",
    "sellToCity",
    "sellToCountry",
    "sellToState",
    "sellToPostCode",
    "billToAddressLine1",
    "billToAddressLine2",
    "billToCity",
    "billToCountry",
    "billToState",
    "billToPostCode",
    "shortcutDimension1Code",
    "shortcutDimension2Code",
    "currencyId",
    "currencyCode",
    "paymentTermsId",
    "shipmentMethodId",
    "salesperson",
    "pricesIncludeTax",
    "discountAmount",
    "discountAppliedBeforeTax",
    "totalAmountExcludingTax",
    "totalTaxAmount",
    "totalAmountIncludingTax",
    "status",
    "lastModifiedDateTime",
    "invoiceId",
    "invoiceNumber",
    "phoneNumber",
    "email",
    "customerReturnReasonId",
]
# APIV2SalesCreditMemLines.Page.al (page 30046).
CREDIT_MEMO_LINE_FIELDS = [
    "id",
    "documentId",
    "sequence",
    "itemId",
    "accountId",
    "lineType",
    "lineObjectNumber",
    "description",
    "description2",
    "unitOfMeasureId",
    "unitOfMeasureCode",
    "unitPrice",
    "quantity",
    "discountAmount",
    "discountPercent",
    "discountAppliedBeforeTax",
    "amountExcludingTax",
    "taxCode",
    "taxPercent",
    "totalTaxAmount",
    "amountIncludingTax",
    "invoiceDiscountAllocation",
    "netAmount",
    "netTaxAmount",
    "netAmountIncludingTax",
    "shipmentDate",
    "itemVariantId",
    "locationId",
]


async def posted_invoice(bc: BCClient, *lines: dict[str, Any], **kw: Any) -> dict[str, Any]:
    inv = await new_invoice(bc, *lines, **kw)
    assert (await bc.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")).status == 204
    return (await bc.get(f"salesInvoices({inv['id']})")).body  # type: ignore[no-any-return]


async def _post(bc: BCClient, memo_id: str) -> Any:
    return await bc.post(f"salesCreditMemos({memo_id})/Microsoft.NAV.post")


async def _company(emulator: EmulatorHandle) -> dict[str, Any]:
    return await emulator.control.company_state(emulator.company_ref)


async def _state_invoice(emulator: EmulatorHandle, invoice_id: str) -> dict[str, Any]:
    return next(i for i in (await _company(emulator))["salesInvoices"] if i["id"] == invoice_id)


# ---- the entity ----------------------------------------------------------------------------------


async def test_fields_are_the_pages_and_read_only_controls_are_refused(bc_client: BCClient) -> None:
    """APIV2SalesCreditMemos.Page.al / APIV2SalesCreditMemLines.Page.al: exactly their fields
    (``creditMemoDate``, no ``customerPurchaseOrderReference`` or ``remainingAmount``); controls
    with ``Editable = false`` are refused (BadRequest_InvalidOperation)."""
    memo = await new_credit_memo(bc_client, ext="cn-fields")
    assert [k for k in memo if not k.startswith("@odata.") and k != "salesCreditMemoLines"] == (
        CREDIT_MEMO_FIELDS
    )
    [memo_line] = memo["salesCreditMemoLines"]
    assert [k for k in memo_line if not k.startswith("@odata.")] == CREDIT_MEMO_LINE_FIELDS
    # Code[35] (SalesCrMemoEntityBuffer.Table.al "External Document No."): stored upper-cased.
    assert memo["externalDocumentNumber"] == "CN-FIELDS"
    assert memo["status"] == "Draft" and memo["number"].startswith("S-CR")
    for field, value in (("number", "X1"), ("status", "Open"), ("totalAmountIncludingTax", 1)):
        resp = await bc_client.post("salesCreditMemos", {"customerNumber": "10000", field: value})
        assert (resp.status, resp.error_code) == (400, "BadRequest_InvalidOperation"), field
    unknown = await bc_client.post(
        "salesCreditMemos", {"customerNumber": "10000", "customerPurchaseOrderReference": "PO"}
    )
    assert unknown.status == 400 and "customerPurchaseOrderReference" in unknown.error_message
    listed = await bc_client.get("salesCreditMemos?$filter=externalDocumentNumber eq 'CN-FIELDS'")
    assert [r["id"] for r in listed.body["value"]] == [memo["id"]]


async def test_due_date_is_the_credit_memo_date_unless_the_terms_say_otherwise(
    bc_client: BCClient,
) -> None:
    """SalesHeader.Table.al "Payment Terms Code" OnValidate: for a credit document the due date
    is the document date unless the terms have "Calc. Pmt. Disc. on Cr. Memos" (customer 10000
    has 30 DAGAR, without it)."""
    memo = await new_credit_memo(bc_client, ext="CN-DUE")
    assert memo["dueDate"] == memo["creditMemoDate"]
    given = await new_credit_memo(
        bc_client, ext="CN-DUE2", creditMemoDate="2026-11-30", dueDate="2026-12-30"
    )
    assert (given["creditMemoDate"], given["dueDate"]) == ("2026-11-30", "2026-12-30")


async def test_lines_and_their_dimensions_are_the_credit_memos_own(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """APIV2SalesCreditMemLines.Page.al: ``dimensionSetLines`` with Parent Type "Sales Credit
    Memo Line", set in a $batch like invoice lines; salesInvoiceLines and salesCreditMemoLines
    each show only their own documents' lines (both are Sales Lines in BC, by Document Type)."""
    memo = await new_credit_memo(bc_client, line(qty=2), ext="CN-DIMS")
    [memo_line] = memo["salesCreditMemoLines"]
    company = f"companies({emulator.company_id})"
    resp = await bc_client.post(
        f"{emulator.api_root}/$batch",
        {
            "requests": [
                {
                    "id": "1",
                    "method": "POST",
                    "url": f"{company}/salesCreditMemoLines({memo_line['id']})/dimensionSetLines",
                    "headers": {"Content-Type": "application/json"},
                    "body": {"code": "PROJEKT", "valueCode": "4005"},
                }
            ]
        },
    )
    assert [r["status"] for r in resp.body["responses"]] == [201]
    dims = await bc_client.get(
        f"salesCreditMemos({memo['id']})/salesCreditMemoLines({memo_line['id']})/dimensionSetLines"
    )
    [dim] = dims.body["value"]
    assert (dim["code"], dim["valueCode"], dim["parentType"]) == (
        "PROJEKT",
        "4005",
        "Sales_x0020_Credit_x0020_Memo_x0020_Line",
    )
    as_invoice_line = await bc_client.get(f"salesInvoiceLines?$filter=documentId eq {memo['id']}")
    assert as_invoice_line.body["value"] == []
    own = await bc_client.get(f"salesCreditMemoLines?$filter=documentId eq {memo['id']}")
    assert [r["id"] for r in own.body["value"]] == [memo_line["id"]]
    unfiltered = await bc_client.get("salesCreditMemoLines")
    assert unfiltered.error_message.startswith(
        "You must specify an id or a Document Id to get the lines."
    )


async def test_a_customer_without_posting_groups_fails_the_credit_memo_create(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesHeader.Table.al (the Sell-to / Bill-to validation a credit memo's Sales Header runs
    too, GraphMgtSalCrMemoBuf PropagateOnInsert): Customer.TestField on its posting groups."""
    company = {
        "name": emulator.company_name,
        "customers": [{"number": "50091", "name": "Utan Grupper AB", "country": "SE"}],
    }
    environment = {"name": emulator.environment, "companies": [company]}
    await emulator.control.seed(
        {"tenants": [{"id": emulator.tenant_id, "environments": [environment]}]}
    )
    resp = await bc_client.post(
        "salesCreditMemos", {"customerNumber": "50091", "salesCreditMemoLines": [line()]}
    )
    assert (resp.status, resp.error_code) == (400, "Application_FieldValidationException")
    assert resp.error_message.startswith(
        "Gen. Bus. Posting Group must have a value in Customer: No.=50091."
    )
    assert (await _company(emulator))["salesCreditMemos"] == []


# ---- applying to an invoice ----------------------------------------------------------------------


async def test_invoice_id_must_be_a_posted_invoice(bc_client: BCClient) -> None:
    """APIV2SalesCreditMemos.Page.al, invoiceId OnValidate: SalesInvoiceAggregator
    .GetSalesInvoiceHeaderFromId finds posted invoices only ("The "invoiceId" does not match to
    an Invoice."); then invoiceNumber must be that invoice's number (InvoiceValuesDontMatchErr).
    Accepted, the Applies-to Doc. No. is the posted number and the id reads back."""
    draft = await new_invoice(bc_client, ext="INV-DRAFT")
    for bad in (draft["id"], "0f6e4c6a-0000-4e8f-9a3c-5d7e9f1a2b3c"):
        resp = await bc_client.post(
            "salesCreditMemos",
            {"customerNumber": "10000", "invoiceId": bad, "salesCreditMemoLines": [line()]},
        )
        assert (resp.status, resp.error_code) == (400, "Application_DialogException")
        assert resp.error_message.startswith('The "invoiceId" does not match to an Invoice.')
    posted = await posted_invoice(bc_client, ext="INV-POSTED")
    mismatch = await bc_client.post(
        "salesCreditMemos",
        {"customerNumber": "10000", "invoiceId": posted["id"], "invoiceNumber": "999999"},
    )
    assert mismatch.error_message.startswith(
        'The "invoiceId" and "invoiceNumber" do not match to a specific Invoice.'
    )
    memo = await new_credit_memo(bc_client, ext="CN-APPLY", invoiceId=posted["id"])
    assert (memo["invoiceId"], memo["invoiceNumber"]) == (posted["id"], posted["number"])
    read = (await bc_client.get(f"salesCreditMemos({memo['id']})")).body
    assert (read["invoiceId"], read["invoiceNumber"]) == (posted["id"], posted["number"])


async def test_posting_applies_the_credit_memo_to_the_invoice(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Sales-Post → GenJnlPostLine.Codeunit.al PrepareTempCustLedgEntry applies the credit memo
    to the invoice's open customer ledger entry; the credited amount is recorded on the invoice.
    A credit memo applied in full is closed: status Paid (GraphMgtSalCrMemoBuf
    SetStatusOptionFromSalesCreditMemoHeader, SalesCrMemoHeader.Table.al Paid). The same id
    keeps working; posting again answers DraftCreditMemoActionErr; a posted credit memo cannot
    be changed (CannotModifyPostedCrMemoErr)."""
    invoice = await posted_invoice(bc_client, line(qty=10, price=100), ext="INV-CREDITED")
    memo = await new_credit_memo(
        bc_client, line(qty=2, price=100), ext="CN-PART", invoiceId=invoice["id"]
    )
    assert (await _post(bc_client, memo["id"])).status == 204
    after = (await bc_client.get(f"salesCreditMemos({memo['id']})")).body
    assert after["number"] != memo["number"] and after["number"].startswith("104")
    assert after["status"] == "Paid"  # 250.00 incl. VAT applied in full
    assert (after["invoiceId"], after["invoiceNumber"]) == (invoice["id"], invoice["number"])
    state = await _state_invoice(emulator, invoice["id"])
    assert state["creditedAmount"] == 250 and state["status"] == "Open"
    # The application lowers the invoice's remaining amount like a payment (APIV2SalesInvoices
    # GetRemainingAmount reads the customer ledger entry), without a status change.
    read = (await bc_client.get(f"salesInvoices({invoice['id']})")).body
    assert read["remainingAmount"] == read["totalAmountIncludingTax"] - 250
    assert read["lastModifiedDateTime"] == invoice["lastModifiedDateTime"]
    again = await _post(bc_client, memo["id"])
    assert again.error_message.startswith("The action can be applied to a draft credit memo only.")
    changed = await bc_client.patch(
        f"salesCreditMemos({memo['id']})",
        {"externalDocumentNumber": "X"},
        headers={"If-Match": "*"},
    )
    assert changed.error_message.startswith(
        "The credit memo has been posted and can no longer be modified."
    )
    unapplied = await new_credit_memo(bc_client, ext="CN-UNAPPLIED")
    assert (await _post(bc_client, unapplied["id"])).status == 204
    read = (await bc_client.get(f"salesCreditMemos({unapplied['id']})")).body
    assert (read["status"], read["invoiceId"]) == ("Open", EMPTY_GUID)


async def test_a_fully_credited_invoice_is_closed_and_takes_no_more_credit(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """An invoice whose entry is applied in full is closed (Paid, SalesInvoiceAggregator); the
    next credit memo applied to it finds no open entry: Internal_DataNotFoundFilter "There is no
    Cust. Ledger Entry within the filter." and nothing is posted."""
    invoice = await posted_invoice(bc_client, line(qty=1, price=100), ext="INV-FULL")
    first = await new_credit_memo(
        bc_client, line(qty=1, price=100), ext="CN-FULL-1", invoiceId=invoice["id"]
    )
    assert (await _post(bc_client, first["id"])).status == 204
    closed = (await bc_client.get(f"salesInvoices({invoice['id']})")).body
    assert closed["status"] == "Paid"
    second = await new_credit_memo(
        bc_client, line(qty=1, price=10), ext="CN-FULL-2", invoiceId=invoice["id"]
    )
    refused = await _post(bc_client, second["id"])
    assert (refused.status, refused.error_code) == (400, "Internal_DataNotFoundFilter")
    assert refused.error_message.startswith("There is no Cust. Ledger Entry within the filter.")
    assert (await bc_client.get(f"salesCreditMemos({second['id']})")).body["status"] == "Draft"


async def test_an_invoice_of_another_customer_or_no_invoice_fails_the_post(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """The page checks no customer (invoiceId) and nothing at all (invoiceNumber alone: the
    Applies-to Doc. No. OnValidate only marks an open entry if there is one); the post's
    FindFirst filters on the credit memo's customer, so another customer's invoice, or a
    number of no invoice, fails there and the invoice keeps its amount."""
    other = await posted_invoice(bc_client, line(qty=1, price=100), customer="20000", ext="INV-20")
    memo = await new_credit_memo(bc_client, ext="CN-OTHER", invoiceId=other["id"])
    assert memo["invoiceNumber"] == other["number"]
    refused = await _post(bc_client, memo["id"])
    assert refused.error_code == "Internal_DataNotFoundFilter"
    assert "Customer No.: 10000" in refused.error_message
    assert "creditedAmount" not in await _state_invoice(emulator, other["id"])
    nowhere = await new_credit_memo(bc_client, ext="CN-NOWHERE", invoiceNumber="999999")
    assert (nowhere["invoiceNumber"], nowhere["invoiceId"]) == ("999999", EMPTY_GUID)
    assert (await _post(bc_client, nowhere["id"])).error_code == "Internal_DataNotFoundFilter"


async def test_post_refusals_before_sales_post(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """APIV2SalesCreditMemos.Page.al PostCreditMemo: no line → NoLineErr, before SendToPosting;
    ApprovalsMgmt.Codeunit.al PrePostApprovalCheckSales under a credit memo approval workflow:
    "Sales Credit Memo … must be approved and released …" (workflows are per document type)."""
    empty = await bc_client.post("salesCreditMemos", {"customerNumber": "10000"})
    refused = await _post(bc_client, empty.body["id"])
    assert refused.error_message.startswith("Please add at least one line item to the credit memo.")
    control, at = emulator.control, emulator.company_ref
    await control.set_sales_credit_memo_approval(True, at=at)
    memo = await new_credit_memo(bc_client, ext="CN-APPROVAL")
    waiting = await _post(bc_client, memo["id"])
    assert waiting.error_message.startswith(
        f"Sales Credit Memo {memo['number']} must be approved and released before you can "
        "perform this action."
    )
    # The invoice workflow is a separate one: invoices still post.
    assert (await posted_invoice(bc_client, ext="INV-NO-WORKFLOW"))["status"] == "Open"
    shown = await control.set_sales_credit_memo_status("Released", at=at, credit_memo_id=memo["id"])
    assert shown["status"] == "Open"
    assert (await _post(bc_client, memo["id"])).status == 204
    await control.set_sales_credit_memo_approval(False, at=at)


async def test_a_negative_sales_invoice_is_refused_at_the_post(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesPost.Codeunit.al CheckTotalInvoiceAmount: an invoice whose total line amount and
    total incl. VAT are below 0 fails with TotalInvoiceAmountNegativeErr (the draft itself is
    accepted); the same amounts as a credit memo post (only Invoice and Order are checked). An
    invoice with a negative line but a positive total posts."""
    negative = await new_invoice(bc_client, line(qty=-2, price=100), ext="INV-NEG")
    assert negative["totalAmountIncludingTax"] == -250
    refused = await bc_client.post(f"salesInvoices({negative['id']})/Microsoft.NAV.post")
    assert (refused.status, refused.error_code) == (400, "Application_DialogException")
    assert refused.error_message.startswith(
        "The total amount for the invoice must be 0 or greater."
    )
    assert (await bc_client.get(f"salesInvoices({negative['id']})")).body["status"] == "Draft"
    mixed = await new_invoice(
        bc_client, line(qty=3, price=100), line(qty=-1, price=100), ext="INV-MIXED"
    )
    assert (await bc_client.post(f"salesInvoices({mixed['id']})/Microsoft.NAV.post")).status == 204
    memo = await new_credit_memo(bc_client, line(qty=2, price=100), line(qty=-1, price=50))
    assert memo["totalAmountExcludingTax"] == 150
    assert (await _post(bc_client, memo["id"])).status == 204
