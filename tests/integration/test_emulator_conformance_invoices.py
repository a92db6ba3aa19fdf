"""Emulator conformance: sales invoice rules read in Microsoft's AL source (bc-api.md, section
"Corrections checked against the AL source", points 4, 5, 6, 8 and 9).

Each test names the AL file the rule comes from; everything goes over real HTTPS with a real
token, the way the worker talks to BC.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.support.conformance import line, new_invoice

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"


async def _seed_company(emulator: EmulatorHandle, **spec: Any) -> None:
    company = {"name": emulator.company_name, **spec}
    environment = {"name": emulator.environment, "companies": [company]}
    await emulator.control.seed(
        {"tenants": [{"id": emulator.tenant_id, "environments": [environment]}]}
    )


async def _status(bc: BCClient, invoice_id: str) -> str:
    resp = await bc.get(f"salesInvoices({invoice_id})")
    assert resp.status == 200, resp.body
    return str(resp.body["status"])


# ---- Corrections 4: unposted invoices are Draft, In Review or Open ------------------------------


async def test_unposted_status_follows_the_sales_header_status(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesInvoiceAggregator.Codeunit.al, InsertOrModifyFromSalesHeader: Pending Approval →
    In Review; Released and Pending Prepayment → Open (like a posted invoice); Open → Draft."""
    inv = await new_invoice(bc_client, ext="M-STATUS")
    assert inv["status"] == "Draft"
    control, at = emulator.control, emulator.company_ref
    for header_status, api_status in (
        ("Released", "Open"),
        ("Pending Prepayment", "Open"),
        ("Pending Approval", "In_x0020_Review"),
        ("Open", "Draft"),
    ):
        shown = await control.set_sales_invoice_status(header_status, at=at, invoice_id=inv["id"])
        assert shown["status"] == api_status
        assert await _status(bc_client, inv["id"]) == api_status
    # The status filter sees the same values (e.g. a payments poll asking for Open invoices).
    await control.set_sales_invoice_status("Released", at=at, invoice_id=inv["id"])
    listed = await bc_client.get("salesInvoices?$filter=status eq 'Open'")
    assert inv["id"] in [row["id"] for row in listed.body["value"]]


async def test_post_decides_by_the_posted_flag_not_by_the_status(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """APIV2SalesInvoices.Page.al, Post → GetDraftInvoice: `if Rec.Posted then
    Error(DraftInvoiceActionErr)`. A released draft shows Open and posts like any draft; posting a
    posted invoice (also Open) answers "The action can be applied to a draft invoice only."."""
    inv = await new_invoice(bc_client, ext="M-RELEASED")
    await emulator.control.set_sales_invoice_status(
        "Released", at=emulator.company_ref, invoice_id=inv["id"]
    )
    assert await _status(bc_client, inv["id"]) == "Open"
    posted = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert posted.status == 204, posted.body
    after = (await bc_client.get(f"salesInvoices({inv['id']})")).body
    assert after["status"] == "Open" and after["number"] != inv["number"]
    again = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert (again.status, again.error_code) == (400, "Application_DialogException")
    assert again.error_message.startswith("The action can be applied to a draft invoice only.")


async def test_an_approval_workflow_refuses_to_post_until_the_invoice_is_released(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesHeader.Table.al SendToPosting → IsApprovedForPosting → ApprovalsMgmt.Codeunit.al
    PrePostApprovalCheckSales: with an enabled workflow an Open document fails with "Sales %1 %2
    must be approved and released before you can perform this action."; Pending Approval is
    refused too (the stricter reading, see documents.post_sales_invoice); Released posts."""
    control, at = emulator.control, emulator.company_ref
    await control.set_sales_invoice_approval(True, at=at)
    inv = await new_invoice(bc_client, ext="M-APPROVAL")
    refused = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert (refused.status, refused.error_code) == (400, "Application_DialogException")
    assert refused.error_message.startswith(
        f"Sales Invoice {inv['number']} must be approved and released before you can perform "
        "this action."
    )
    await control.set_sales_invoice_status("Pending Approval", at=at, invoice_id=inv["id"])
    pending = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert pending.status == 400 and "must be approved and released" in pending.error_message
    assert await _status(bc_client, inv["id"]) == "In_x0020_Review"
    await control.set_sales_invoice_status("Released", at=at, invoice_id=inv["id"])
    assert (await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")).status == 204
    # Without the workflow, an Open draft posts at once.
    await control.set_sales_invoice_approval(False, at=at)
    plain = await new_invoice(bc_client, ext="M-NO-APPROVAL")
    assert (await bc_client.post(f"salesInvoices({plain['id']})/Microsoft.NAV.post")).status == 204


# ---- Corrections 5: posting groups are tested when the draft is created --------------------------


async def test_a_customer_without_posting_groups_fails_the_draft_create(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesHeader.Table.al: validating "Sell-to Customer No." runs Customer.TestField("Gen. Bus.
    Posting Group"), then "Bill-to Customer No." runs Customer.TestField("Customer Posting
    Group"): POST salesInvoices fails (Application_FieldValidationException). The draft keeps
    copies, so groups removed from the customer later do not stop the post."""
    await _seed_company(
        emulator,
        customers=[
            {"number": "50090", "name": "Utan Grupper AB", "country": "SE"},
            {
                "number": "50091",
                "name": "Halva Grupper AB",
                "country": "SE",
                "gen_bus_posting_group": "INRIKES",
                "customer_posting_group": "",
            },
        ],
    )
    none = await bc_client.post(
        "salesInvoices", {"customerNumber": "50090", "salesInvoiceLines": [line()]}
    )
    assert (none.status, none.error_code) == (400, "Application_FieldValidationException")
    assert none.error_message.startswith(
        "Gen. Bus. Posting Group must have a value in Customer: No.=50090. It cannot be zero or "
        "empty."
    )
    half = await bc_client.post(
        "salesInvoices", {"customerNumber": "50091", "salesInvoiceLines": [line()]}
    )
    assert (half.status, half.error_code) == (400, "Application_FieldValidationException")
    assert half.error_message.startswith(
        "Customer Posting Group must have a value in Customer: No.=50091."
    )
    state = await emulator.control.company_state(emulator.company_ref)
    assert [i for i in state["salesInvoices"] if i["customerNumber"] in ("50090", "50091")] == []

    await _seed_company(
        emulator, customers=[{"number": "50091", "customer_posting_group": "KUNDER"}]
    )
    inv = await new_invoice(bc_client, customer="50091", ext="M-GROUPS")
    await _seed_company(
        emulator,
        customers=[{"number": "50091", "gen_bus_posting_group": "", "customer_posting_group": ""}],
    )
    assert (await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")).status == 204


# ---- Corrections 6: taxCode is cut to 20 characters ---------------------------------------------


async def test_tax_code_is_cut_to_twenty_characters_without_an_error(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """APIV2SalesInvoiceLines.Page.al, taxCode: a Code[50] control whose OnValidate runs
    Validate("VAT Prod. Posting Group", COPYSTR(Rec."Tax Code", 1, 20)): a longer code silently
    becomes the VAT group its first 20 characters name; more than 50 is a length error."""
    await _seed_company(emulator, vat={"MOMS-25-STANDARD-SVE": 25})
    inv = await new_invoice(bc_client, line(tax="MOMS-25-STANDARD-SVERIGE"), ext="M-VAT")
    [got] = (await bc_client.get(f"salesInvoices({inv['id']})/salesInvoiceLines")).body["value"]
    assert (got["taxCode"], got["taxPercent"]) == ("MOMS-25-STANDARD-SVE", 25)
    too_long = await bc_client.post(
        "salesInvoices",
        {"customerNumber": "10000", "salesInvoiceLines": [line(tax="X" * 51)]},
    )
    assert (too_long.status, too_long.error_code) == (400, "Application_StringExceededLength")


# ---- Corrections 8: Code fields are stored upper-cased ------------------------------------------


async def test_external_document_number_is_stored_upper_case_and_filtered_as_written(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """SalesInvoiceEntityAggregate.Table.al: "External Document No." is Code[35], stored upper
    case. Whether `$filter eq` with a lower-case literal matches it is UNCONFIRMED; the emulator
    takes the stricter reading (it does not), so a client must search upper-cased."""
    inv = await new_invoice(bc_client, ext="ab-12")
    assert inv["externalDocumentNumber"] == "AB-12"
    lower = await bc_client.get("salesInvoices?$filter=externalDocumentNumber eq 'ab-12'")
    assert lower.status == 200 and lower.body["value"] == []
    upper = await bc_client.get("salesInvoices?$filter=externalDocumentNumber eq 'AB-12'")
    assert [row["id"] for row in upper.body["value"]] == [inv["id"]]
    # The same holds for every Code field, e.g. customers.number.
    assert (await bc_client.get("customers?$filter=number eq '10000'")).body["value"]
    await _seed_company(emulator, customers=[{"number": "k-1", "name": "Gemener AB"}])
    assert (await bc_client.get("customers?$filter=number eq 'k-1'")).body["value"] == []
    assert len((await bc_client.get("customers?$filter=number eq 'K-1'")).body["value"]) == 1


# ---- Corrections 9: the local currency reads back as its code -----------------------------------


async def test_blank_currency_reads_back_as_the_local_currency_code(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """GraphMgtGeneralTools.Codeunit.al: TranslateNAVCurrencyCodeToCurrencyCode shows a blank
    currency as General Ledger Setup's LCY code (customers, salesInvoices, purchaseInvoices);
    TranslateCurrencyCodeToNAVCurrencyCode stores the LCY code sent in as blank."""
    lcy = (await bc_client.get("generalLedgerSetup")).body["value"][0]["localCurrencyCode"]
    assert lcy == "SEK"
    blank = await bc_client.post("customers", {"displayName": "Blank AB", "currencyCode": ""})
    named = await bc_client.post("customers", {"displayName": "Krona AB", "currencyCode": "SEK"})
    for resp in (blank, named):
        assert resp.status == 201, resp.body
        assert (resp.body["currencyCode"], resp.body["currencyId"]) == ("SEK", EMPTY_GUID)
    inv = await new_invoice(bc_client, ext="M-LCY")
    assert (inv["currencyCode"], inv["currencyId"]) == ("SEK", EMPTY_GUID)
    purchases = (await bc_client.get("purchaseInvoices")).body["value"]
    assert purchases and all(p["currencyCode"] for p in purchases)
    assert "SEK" in {p["currencyCode"] for p in purchases}
