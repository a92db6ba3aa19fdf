"""Emulator conformance: API v2.0 entities, conventions, query options, documents and posting.

Each test names the section of /work/shared/reference/bc-api.md it holds the emulator to.
Everything goes over real HTTPS with a real token.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.emulator.entities import escape_enum, odatav4_name
from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.support.conformance import line, new_invoice

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
WEAK_ETAG = re.compile(r'^W/"[A-Za-z0-9+/=]+"$')
CORRELATION = re.compile(r"  CorrelationId:  [0-9a-f-]{36}\.$")


# ---- §1, §3, §5.1: roots, errors, conventions ----------------------------------------------------


async def test_companies_list_with_platform_fields(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §4.1: GET …/api/v2.0/companies lists companies with id, name, displayName, …;
    every row carries @odata.etag and the answer an @odata.context (§3)."""
    resp = await bc_client.get(f"{emulator.api_root}/companies")
    assert resp.status == 200
    assert resp.body["@odata.context"].endswith("/api/v2.0/$metadata#companies")
    by_name = {c["name"]: c for c in resp.body["value"]}
    cronus = by_name[emulator.company_name]
    assert cronus["id"] == emulator.company_id
    assert WEAK_ETAG.match(cronus["@odata.etag"])
    assert DATETIME.match(cronus["systemCreatedAt"])
    assert "CRONUS International Ltd." in by_name


async def test_companies_are_read_only(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §4.1: companies is read-only (POST → 405 BadRequest_MethodNotAllowed)."""
    resp = await bc_client.post(f"{emulator.api_root}/companies", {"name": "X"})
    assert (resp.status, resp.error_code) == (405, "BadRequest_MethodNotAllowed")


async def test_unknown_environment_is_noenvironment(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §1.1/§7: a wrong environment → 404 {"code":"NoEnvironment","message":"Environment does
    not exist."}."""
    resp = await bc_client.get(f"/v2.0/{emulator.tenant_id}/Sandbox/api/v2.0/companies")
    assert resp.status == 404
    assert resp.body == {
        "error": {"code": "NoEnvironment", "message": "Environment does not exist."}
    }


async def test_environment_name_and_tenant_domain_in_the_url(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §1.1: tenant as GUID or domain; environment names such as Production."""
    resp = await bc_client.get(f"/v2.0/{emulator.tenant_domain}/production/api/v2.0/companies")
    assert resp.status == 200


async def test_unknown_company_id(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §5.1 (Internal_CompanyNotFound; status UNCONFIRMED → 404)."""
    resp = await bc_client.get(
        f"{emulator.api_root}/companies(11111111-2222-4333-8444-555555555555)/customers"
    )
    assert (resp.status, resp.error_code) == (404, "Internal_CompanyNotFound")


async def test_unknown_entity_set_and_segment(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §5.1: unknown resource → 404 BadRequest_ResourceNotFound 'Resource not found for the
    segment …'."""
    resp = await bc_client.get("vendorz")
    assert (resp.status, resp.error_code) == (404, "BadRequest_ResourceNotFound")
    assert resp.error_message.startswith("Resource not found for the segment 'vendorz'.")
    assert CORRELATION.search(resp.error_message)
    resp = await bc_client.get(f"customers({emulator.company_id})")
    assert resp.status == 404


async def test_company_information_and_general_ledger_setup(bc_client: BCClient) -> None:
    """bc-api §4.16/§4.17 and bc-contract 'Verify' steps 3-4: country and shortcut dimensions."""
    info = (await bc_client.get("companyInformation")).body["value"][0]
    assert info["country"] == "SE"
    assert info["currencyCode"] == "SEK"
    setup = (await bc_client.get("generalLedgerSetup")).body["value"][0]
    assert setup["shortcutDimension1Code"] == "PROJEKT"
    assert setup["shortcutDimension2Code"] == "AVDELNING"
    assert setup["shortcutDimension3Code"] == ""
    assert setup["localCurrencyCode"] == "SEK"
    assert setup["allowPostingFrom"] == "0001-01-01"


async def test_dimensions_and_values_are_read_only(bc_client: BCClient) -> None:
    """bc-api §4.6/§4.7: dimensions, dimensionValues and dimensions({id})/dimensionValues are
    readable; writes are rejected (405 BadRequest_MethodNotAllowed, UNCONFIRMED status)."""
    dims = {d["code"]: d for d in (await bc_client.get("dimensions")).body["value"]}
    assert {"PROJEKT", "AVDELNING", "KOSTNADSSTÄLLE"} <= set(dims)
    avd = dims["AVDELNING"]
    values = (await bc_client.get(f"dimensions({avd['id']})/dimensionValues")).body["value"]
    assert [v["code"] for v in values] == ["100", "200", "300"]
    assert all(v["dimensionId"] == avd["id"] for v in values)
    flat = await bc_client.get(
        f"dimensionValues?$filter=dimensionId eq {avd['id']} and code eq '200'"
    )
    assert [v["displayName"] for v in flat.body["value"]] == ["Konsulting"]
    resp = await bc_client.post("dimensionValues", {"code": "999", "dimensionId": avd["id"]})
    assert (resp.status, resp.error_code) == (405, "BadRequest_MethodNotAllowed")
    resp = await bc_client.patch(
        f"dimensions({avd['id']})", {"displayName": "x"}, headers={"If-Match": "*"}
    )
    assert resp.status == 405


async def test_error_body_shape(bc_client: BCClient) -> None:
    """bc-api §5.1: {"error":{"code","message"}} and the message ends '  CorrelationId:
    <guid>.'."""
    resp = await bc_client.post("customers", {"number": "X1"})
    assert resp.status == 400
    assert set(resp.body) == {"error"}
    assert set(resp.body["error"]) == {"code", "message"}
    assert CORRELATION.search(resp.error_message)


# ---- §4.2 customers -----------------------------------------------------------------------------


async def test_create_customer_with_all_contract_fields(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §4.2 + bc-contract 'Customers': POST with the fields we send → 201, Location, ETag;
    blank currency shows the LCY code; paymentTermsId links payment terms."""
    terms = (await bc_client.get("paymentTerms?$filter=code eq '30 DAGAR'")).body["value"][0]
    body = {
        "number": "10006",
        "displayName": "Acme AB",
        "addressLine1": "Storgatan 1",
        "addressLine2": "Plan 2",
        "city": "Stockholm",
        "postalCode": "111 22",
        "country": "SE",
        "email": "billing@acme.se",
        "phoneNumber": "+46 8 123 45",
        "website": "https://acme.se",
        "taxRegistrationNumber": "SE556677889901",
        "currencyCode": "",
        "paymentTermsId": terms["id"],
    }
    resp = await bc_client.post("customers", body)
    assert resp.status == 201, resp.body
    c = resp.body
    assert {k: c[k] for k in body if k != "currencyCode"} == {
        k: v for k, v in body.items() if k != "currencyCode"
    }
    assert c["currencyCode"] == "SEK"
    assert c["blocked"] == "_x0020_"
    assert c["type"] == "Company"
    assert GUID.match(c["id"]) and DATETIME.match(c["lastModifiedDateTime"])
    assert resp.headers["ETag"] == c["@odata.etag"]
    assert resp.headers["Location"].endswith(f"/customers({c['id']})")
    found = await bc_client.get("customers?$filter=number eq '10006'")
    assert [x["id"] for x in found.body["value"]] == [c["id"]]


async def test_customer_requires_display_name(bc_client: BCClient) -> None:
    """bc-api §4.2: POST without displayName → 'A "displayName" must be provided.'; PATCH blank →
    'The blank "displayName" is not allowed.' (Application_DialogException, 400)."""
    resp = await bc_client.post("customers", {"number": "777"})
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert resp.error_message.startswith('A "displayName" must be provided.')
    cust = (await bc_client.get("customers?$filter=number eq '10000'")).body["value"][0]
    resp = await bc_client.patch(
        f"customers({cust['id']})", {"displayName": ""}, headers={"If-Match": "*"}
    )
    assert resp.error_message.startswith('The blank "displayName" is not allowed.')


async def test_duplicate_customer_number(bc_client: BCClient) -> None:
    """bc-api §5.1: duplicate primary key → Internal_EntityWithSameKeyExists (409, secondary
    evidence)."""
    resp = await bc_client.post("customers", {"number": "10000", "displayName": "Dup"})
    assert (resp.status, resp.error_code) == (409, "Internal_EntityWithSameKeyExists")
    assert "No.='10000'" in resp.error_message


async def test_customer_number_from_number_series(bc_client: BCClient) -> None:
    """bc-api §4.2: number optional; BC's number series assigns it."""
    first = (await bc_client.post("customers", {"displayName": "Utan nummer 1"})).body
    second = (await bc_client.post("customers", {"displayName": "Utan nummer 2"})).body
    assert first["number"] == "K10000"
    assert second["number"] == "K10001"


async def test_read_only_field_in_post_and_patch(bc_client: BCClient) -> None:
    """bc-api §3: read-only fields in POST/PATCH → 400 BadRequest_InvalidOperation "Control 'X' is
    read-only"."""
    resp = await bc_client.post("customers", {"displayName": "A", "balanceDue": 5})
    assert (resp.status, resp.error_code) == (400, "BadRequest_InvalidOperation")
    assert resp.error_message.startswith("Control 'balanceDue' is read-only")
    cust = (await bc_client.get("customers?$filter=number eq '10000'")).body["value"][0]
    resp = await bc_client.patch(
        f"customers({cust['id']})", {"taxAreaDisplayName": "x"}, headers={"If-Match": "*"}
    )
    assert resp.error_message.startswith("Control 'taxAreaDisplayName' is read-only")


async def test_unknown_field_is_rejected(bc_client: BCClient) -> None:
    """bc-api §5.1: BadRequest ('Invalid Request Body' family) for properties the entity lacks."""
    resp = await bc_client.post("customers", {"displayName": "A", "genBusPostingGroup": "INRIKES"})
    assert (resp.status, resp.error_code) == (400, "BadRequest")
    assert "genBusPostingGroup" in resp.error_message


@pytest.mark.parametrize(
    ("field", "limit"), [("displayName", 100), ("addressLine2", 50), ("city", 30), ("number", 20)]
)
async def test_string_longer_than_its_field(bc_client: BCClient, field: str, limit: int) -> None:
    """bc-api §3 + §4.2 lengths: longer → 400 Application_StringExceededLength."""
    body = {"displayName": "A", field: "x" * (limit + 1)}
    resp = await bc_client.post("customers", body)
    assert (resp.status, resp.error_code) == (400, "Application_StringExceededLength")
    assert f"less than or equal to {limit} characters" in resp.error_message
    body[field] = "y" * limit
    assert (await bc_client.post("customers", body)).status == 201


async def test_wrong_json_type_is_rejected(bc_client: BCClient) -> None:
    """bc-api §5.1: BadRequest 'Unable to convert value …' family for values of the wrong type."""
    resp = await bc_client.post("customers", {"displayName": "A", "creditLimit": "lots"})
    assert (resp.status, resp.error_code) == (400, "BadRequest")
    resp = await bc_client.post("customers", {"displayName": "A", "paymentTermsId": "not-a-guid"})
    assert resp.status == 400


async def test_value_types_on_output(bc_client: BCClient) -> None:
    """bc-api §3: GUIDs lowercase; dates YYYY-MM-DD with 0001-01-01 for none; datetimes UTC with ms
    and Z;
    enums escaped (_x0020_ for blank)."""
    inv = await new_invoice(bc_client)
    assert GUID.match(inv["id"]) and GUID.match(inv["customerId"])
    assert inv["promisedPayDate"] == "0001-01-01"
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", inv["invoiceDate"])
    assert DATETIME.match(inv["lastModifiedDateTime"])
    assert inv["orderId"] == "00000000-0000-0000-0000-000000000000"
    cust = (await bc_client.get("customers?$filter=number eq '10000'")).body["value"][0]
    assert cust["blocked"] == "_x0020_"


def test_enum_and_odatav4_name_escaping() -> None:
    """bc-api §3 (enum escaping) and §1.3 (ODataV4 field names): the emulator's helpers."""
    assert escape_enum(" ") == "_x0020_"
    assert escape_enum("Credit Memo") == "Credit_x0020_Memo"
    assert escape_enum("G/L Account") == "G_x002F_L_x0020_Account"
    assert escape_enum("Begin-Total") == "Begin_x002D_Total"
    assert odatav4_name("Gen. Bus. Posting Group") == "Gen_Bus_Posting_Group"
    assert odatav4_name("Country/Region Code") == "Country_Region_Code"
    assert odatav4_name("No.") == "No"
    assert odatav4_name("Discount %") == "Discount_Percent"


# ---- §5.2 ETags ---------------------------------------------------------------------------------


async def test_patch_needs_if_match(bc_client: BCClient) -> None:
    """bc-api §5.2: missing If-Match → 400 BadRequest_InvalidToken; stale → 409
    Request_EntityChanged; '*' accepted; the ETag changes on every modify; PATCH → 200 entity."""
    cust = (await bc_client.get("customers?$filter=number eq '10000'")).body["value"][0]
    url = f"customers({cust['id']})"
    resp = await bc_client.patch(url, {"city": "Uppsala"})
    assert (resp.status, resp.error_code) == (400, "BadRequest_InvalidToken")
    resp = await bc_client.patch(
        url, {"city": "Uppsala"}, headers={"If-Match": cust["@odata.etag"]}
    )
    assert resp.status == 200
    assert resp.body["city"] == "Uppsala"
    new_etag = resp.body["@odata.etag"]
    assert new_etag != cust["@odata.etag"]
    resp = await bc_client.patch(url, {"city": "Lund"}, headers={"If-Match": cust["@odata.etag"]})
    assert (resp.status, resp.error_code) == (409, "Request_EntityChanged")
    assert resp.error_message.startswith("Another user has already changed the record.")
    resp = await bc_client.patch(url, {"city": "Lund"}, headers={"If-Match": "*"})
    assert resp.status == 200 and resp.body["city"] == "Lund"
    resp = await bc_client.patch(url, {"city": "Malmö"}, headers={"If-Match": "garbage"})
    assert (resp.status, resp.error_code) == (400, "BadRequest_InvalidToken")


async def test_prefer_return_minimal(bc_client: BCClient) -> None:
    """bc-api §5.2: POST 201 with the entity, 204 with Prefer: return-no-content/minimal."""
    resp = await bc_client.post(
        "customers", {"displayName": "Minimal AB"}, headers={"Prefer": "return=minimal"}
    )
    assert resp.status == 204
    assert resp.headers["Location"]


async def test_customer_rename_by_number(bc_client: BCClient) -> None:
    """bc-api §4.2: changing number via PATCH renames the customer."""
    cust = (await bc_client.get("customers?$filter=number eq '10000'")).body["value"][0]
    resp = await bc_client.patch(
        f"customers({cust['id']})", {"number": "10001"}, headers={"If-Match": "*"}
    )
    assert resp.status == 200
    assert (await bc_client.get("customers?$filter=number eq '10000'")).body["value"] == []
    assert (await bc_client.get("customers?$filter=number eq '10001'")).body["value"][0][
        "id"
    ] == cust["id"]


async def test_payment_terms_fields(bc_client: BCClient) -> None:
    """bc-contract 'Customers' (paymentTermsId) / [BCApps] APIV2PaymentTerms (page 30023)."""
    resp = await bc_client.get("paymentTerms")
    terms = {t["code"]: t for t in resp.body["value"]}
    assert set(terms) == {"10 DAGAR", "14 DAGAR", "30 DAGAR"}
    t = terms["30 DAGAR"]
    assert t["dueDateCalculation"] == "30D"
    assert t["displayName"] == "30 dagar netto"
    assert t["discountPercent"] == 0
    assert t["calculateDiscountOnCreditMemos"] is False


# ---- §5.3 paging, §5.4 query options ------------------------------------------------------------


async def test_server_driven_paging(bc_client: BCClient) -> None:
    """bc-api §5.3: @odata.nextLink with $skiptoken, honouring Prefer: odata.maxpagesize, and the
    response carries Preference-Applied; following the links verbatim yields every row once."""
    for i in range(22):
        assert (
            await bc_client.post("customers", {"number": f"P{i:03d}", "displayName": f"Page {i}"})
        ).status == 201
    url: str | None = "customers?$filter=startswith(number,'P')"
    seen: list[str] = []
    pages = 0
    while url:
        resp = await bc_client.get(url, headers={"Prefer": "odata.maxpagesize=10"})
        assert resp.status == 200
        assert resp.headers["Preference-Applied"] == "odata.maxpagesize=10"
        seen += [c["number"] for c in resp.body["value"]]
        url = resp.body.get("@odata.nextLink")
        if url:
            assert "$skiptoken=" in url
        pages += 1
    assert pages == 3
    assert seen == [f"P{i:03d}" for i in range(22)]


async def test_paging_follows_top(bc_client: BCClient) -> None:
    """bc-api §5.3/§5.4: $top alone is fine and paging respects it."""
    for i in range(5):
        await bc_client.post("customers", {"number": f"T{i}", "displayName": "T"})
    resp = await bc_client.get(
        "customers?$filter=startswith(number,'T')&$top=3", headers={"Prefer": "odata.maxpagesize=2"}
    )
    first = [c["number"] for c in resp.body["value"]]
    nxt = await bc_client.get(
        resp.body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"}
    )
    assert first + [c["number"] for c in nxt.body["value"]] == ["T0", "T1", "T2"]
    assert "@odata.nextLink" not in nxt.body


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("number eq '10000'", ["10000"]),
        ("number ne '10000'", ["20000", "30000"]),
        ("number gt '10000'", ["20000", "30000"]),
        ("number ge '20000' and number le '20000'", ["20000"]),
        ("number lt '20000'", ["10000"]),
        ("number eq '10000' or number eq '30000'", ["10000", "30000"]),
        ("(number eq '10000' or number eq '20000') and country eq 'DE'", ["20000"]),
        ("blocked eq 'All'", ["30000"]),
        ("blocked eq '_x0020_'", ["10000", "20000"]),
        ("taxLiable eq false and creditLimit eq 0", ["10000", "20000", "30000"]),
        ("not (country eq 'SE')", ["20000"]),
        ("contains(displayName,'Research')", ["20000"]),
    ],
)
async def test_filter_operators(bc_client: BCClient, flt: str, expected: list[str]) -> None:
    """bc-api §5.4: eq ne gt ge lt le and (or on one field), string/number/boolean literals."""
    resp = await bc_client.get(f"customers?$filter={flt}")
    assert resp.status == 200, resp.body
    assert sorted(c["number"] for c in resp.body["value"]) == expected


async def test_filter_literals_guid_date_datetime_and_quotes(bc_client: BCClient) -> None:
    """bc-api §5.4 literals: strings with doubled quotes, dates unquoted, datetimes, GUIDs
    unquoted."""
    await bc_client.post("customers", {"number": "Q1", "displayName": "O'Brien & Co"})
    resp = await bc_client.get("customers?$filter=displayName eq 'O''Brien %26 Co'")
    assert [c["number"] for c in resp.body["value"]] == ["Q1"]
    cust = resp.body["value"][0]
    assert [
        c["number"]
        for c in (await bc_client.get(f"customers?$filter=id eq {cust['id']}")).body["value"]
    ] == ["Q1"]
    quoted = await bc_client.get(f"customers?$filter=id eq '{cust['id']}'")
    assert (quoted.status, quoted.error_code) == (400, "BadRequest_NotFound")
    after = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    recent = await bc_client.get(
        f"customers?$filter=lastModifiedDateTime gt {after} and number eq 'Q1'"
    )
    assert len(recent.body["value"]) == 1
    dated = await bc_client.get(
        "purchaseInvoices?$filter=postingDate ge 2026-02-01 and postingDate lt 2026-03-01"
    )
    assert [p["number"] for p in dated.body["value"]] == ["108002"]


@pytest.mark.parametrize(
    ("flt", "code", "text"),
    [
        (
            "number eq '10000' or city eq 'Berlin'",
            "BadRequest",
            "The 'OR' operator is not supported on distinct fields",
        ),
        (
            "nosuchfield eq 1",
            "BadRequest_NotFound",
            "Could not find a property named 'nosuchfield'",
        ),
        ("number eq", "BadRequest_NotFound", "Syntax error"),
        ("number eq 10000", "BadRequest_NotFound", "incompatible types"),
        ("lastModifiedDateTime gt 2026-01-01", "BadRequest_NotFound", "incompatible types"),
        ("blocked eq 'Nope'", "BadRequest_NotFound", "not a valid enumeration"),
    ],
)
async def test_filter_errors(bc_client: BCClient, flt: str, code: str, text: str) -> None:
    """bc-api §5.4 ('OR' on distinct fields) and §5.1 (query syntax errors → 400)."""
    resp = await bc_client.get(f"customers?$filter={flt}")
    assert (resp.status, resp.error_code) == (400, code)
    assert text in resp.error_message


async def test_select_top_orderby_and_unknown_options(bc_client: BCClient) -> None:
    """bc-api §5.4: $select, $top, $orderby; unknown system query options are rejected."""
    resp = await bc_client.get("customers?$select=number,displayName&$orderby=number desc&$top=2")
    assert [set(c) for c in resp.body["value"]] == [{"@odata.etag", "number", "displayName"}] * 2
    assert [c["number"] for c in resp.body["value"]] == ["30000", "20000"]
    resp = await bc_client.get("customers?$select=nope")
    assert resp.status == 400
    resp = await bc_client.get("customers?$frobnicate=1")
    assert resp.status == 400


async def test_customers_and_invoices_eq_filters_use_indexes(bc_client: BCClient) -> None:
    """bc-contract 'Customers'/'Invoices' finds: number eq / externalDocumentNumber eq (indexed)."""
    inv = await new_invoice(bc_client, ext="M-IDX")
    resp = await bc_client.get(
        "salesInvoices?$filter=externalDocumentNumber eq 'M-IDX' and customerNumber eq '10000'"
    )
    assert [i["id"] for i in resp.body["value"]] == [inv["id"]]


# ---- §4.11/§4.12 sales invoices -----------------------------------------------------------------


async def test_deep_insert_with_several_lines_and_totals(bc_client: BCClient) -> None:
    """bc-api §4.11 (deep insert; several nested lines UNCONFIRMED → supported) and §4.12 (line
    amounts, taxPercent from the line's taxCode): totals use each line's VAT %."""
    inv = await new_invoice(
        bc_client,
        line("3010", 10, 1200, "25", description="Konsult november", sequence=10000),
        line("3011", 2, 100, "12", discountPercent=10),
        line("3040", 1, 500, "0"),
    )
    assert inv["status"] == "Draft"
    assert inv["number"] == "S-INV100001"
    assert inv["customerName"] == "Adatum Konsult AB"
    assert inv["totalAmountExcludingTax"] == 12000 + 180 + 500
    assert inv["totalTaxAmount"] == 3000 + 21.6
    assert inv["totalAmountIncludingTax"] == 12680 + 3021.6
    assert (
        inv["dueDate"]
        == (dt.date.fromisoformat(inv["invoiceDate"]) + dt.timedelta(days=30)).isoformat()
    )
    lines = (await bc_client.get(f"salesInvoices({inv['id']})/salesInvoiceLines")).body["value"]
    assert [ln["sequence"] for ln in lines] == [10000, 20000, 30000]
    assert [ln["taxPercent"] for ln in lines] == [25, 12, 0]
    assert lines[1]["discountAmount"] == 20
    assert lines[1]["amountIncludingTax"] == 201.6
    assert lines[0]["description"] == "Konsult november"
    assert lines[2]["description"] == "Försäljning tjänster, momsfri"  # from the G/L account


async def test_invoice_needs_a_customer(bc_client: BCClient) -> None:
    """bc-api §4.11: POST without customer → 'A "customerNumber" or a "customerId" must be
    provided.'"""
    resp = await bc_client.post("salesInvoices", {"externalDocumentNumber": "X"})
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert resp.error_message.startswith('A "customerNumber" or a "customerId" must be provided.')
    resp = await bc_client.post("salesInvoices", {"customerNumber": "99999"})
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert resp.error_message.startswith("The sell-to customer cannot be found.")


async def test_missing_gl_account_rejected_at_line_insert_and_rolled_back(
    bc_client: BCClient,
) -> None:
    """bc-api §4.12 (lineObjectNumber validated on insert; text from [BCApps] APIV2 - Sales Invoice
    Lines, AccountDoesNotExistErr): a missing G/L account fails the whole deep insert with
    Application_DialogException 'Account does not exist.'; nothing is left behind."""
    resp = await bc_client.post(
        "salesInvoices",
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "M-BAD",
            "salesInvoiceLines": [line("3010"), line("9999")],
        },
    )
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert resp.error_message.startswith("Account does not exist.")
    assert (await bc_client.get("salesInvoices?$filter=externalDocumentNumber eq 'M-BAD'")).body[
        "value"
    ] == []
    ok = await new_invoice(bc_client)
    assert ok["number"] == "S-INV100001"  # the failed insert did not consume a number


@pytest.mark.parametrize(
    ("account", "text"),
    [
        ("3999", "Blocked must be equal to 'No'"),
        ("3000", "Account Type must be equal to 'Posting'"),
        ("1510", "Direct Posting must be equal to 'Yes'"),
    ],
)
async def test_unusable_gl_accounts(bc_client: BCClient, account: str, text: str) -> None:
    """bc-api §5.1 Application_FieldValidationException (TestField) for
    blocked/heading/no-direct-posting accounts."""
    resp = await bc_client.post(
        "salesInvoices", {"customerNumber": "10000", "salesInvoiceLines": [line(account)]}
    )
    assert (resp.status, resp.error_code) == (400, "Application_FieldValidationException")
    assert text in resp.error_message


async def test_unknown_tax_code(bc_client: BCClient) -> None:
    """bc-api §4.12 taxCode = VAT Prod. Posting Group: an unknown code →
    Internal_InvalidTableRelation."""
    resp = await bc_client.post(
        "salesInvoices", {"customerNumber": "10000", "salesInvoiceLines": [line(tax="99")]}
    )
    assert (resp.status, resp.error_code) == (400, "Internal_InvalidTableRelation")


async def test_lines_at_company_level_need_a_document_or_line_id(bc_client: BCClient) -> None:
    """bc-api §4.12: companies(..)/salesInvoiceLines needs $filter documentId eq / id eq, else
    'You must specify an Id or a Document Id to get the lines.'"""
    inv = await new_invoice(bc_client, line(), line("3011", tax="12"))
    resp = await bc_client.get("salesInvoiceLines")
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert resp.error_message.startswith(
        "You must specify an Id or a Document Id to get the lines."
    )
    by_doc = (await bc_client.get(f"salesInvoiceLines?$filter=documentId eq {inv['id']}")).body[
        "value"
    ]
    assert len(by_doc) == 2
    by_id = (await bc_client.get(f"salesInvoiceLines?$filter=id eq {by_doc[1]['id']}")).body[
        "value"
    ]
    assert [ln["lineObjectNumber"] for ln in by_id] == ["3011"]
    one = await bc_client.get(f"salesInvoiceLines({by_doc[0]['id']})")
    assert one.status == 200 and one.body["documentId"] == inv["id"]


async def test_add_update_and_delete_lines_update_totals(bc_client: BCClient) -> None:
    """bc-api §4.12: lines under a parent are R/W; header totals (RO) follow."""
    inv = await new_invoice(bc_client, line(qty=1, price=100))
    url = f"salesInvoices({inv['id']})/salesInvoiceLines"
    added = await bc_client.post(url, line("3010", 1, 50))
    assert added.status == 201 and added.body["sequence"] == 20000
    upd = await bc_client.patch(
        f"salesInvoiceLines({added.body['id']})", {"quantity": 2}, headers={"If-Match": "*"}
    )
    assert upd.status == 200 and upd.body["amountExcludingTax"] == 100
    head = (await bc_client.get(f"salesInvoices({inv['id']})")).body
    assert head["totalAmountExcludingTax"] == 200
    assert (await bc_client.delete(f"salesInvoiceLines({added.body['id']})")).status == 204
    assert (await bc_client.get(f"salesInvoices({inv['id']})")).body[
        "totalAmountIncludingTax"
    ] == 125


async def test_expand_lines_and_their_dimensions(bc_client: BCClient) -> None:
    """bc-api §4.9/§5.4: nested $expand (…($expand=dimensionSetLines)) works."""
    inv = await new_invoice(
        bc_client, line(dimensionSetLines=[{"code": "PROJEKT", "valueCode": "4005"}])
    )
    resp = await bc_client.get(
        f"salesInvoices({inv['id']})?$expand=salesInvoiceLines($expand=dimensionSetLines;$select=id,sequence)"
    )
    lines = resp.body["salesInvoiceLines"]
    assert set(lines[0]) == {"@odata.etag", "id", "sequence", "dimensionSetLines"}
    assert [d["valueCode"] for d in lines[0]["dimensionSetLines"]] == ["4005"]
    bad = await bc_client.get("salesInvoices?$expand=nothing")
    assert bad.status == 400


# ---- §4.9 dimensionSetLines ---------------------------------------------------------------------


async def test_line_dimension_set_lines_rules(bc_client: BCClient) -> None:
    """bc-api §4.9: POST {code, valueCode} under a line; duplicate → 'already exists' text; GET
    then PATCH dimensionSetLines({dimensionId}) changes only the value; id/code cannot change."""
    inv = await new_invoice(bc_client)
    line_id = (await bc_client.get(f"salesInvoices({inv['id']})/salesInvoiceLines")).body["value"][
        0
    ]["id"]
    url = f"salesInvoiceLines({line_id})/dimensionSetLines"
    made = await bc_client.post(url, {"code": "PROJEKT", "valueCode": "4005"})
    assert made.status == 201
    d = made.body
    assert (d["code"], d["valueCode"], d["parentId"], d["parentType"]) == (
        "PROJEKT",
        "4005",
        line_id,
        "Sales_x0020_Invoice_x0020_Line",
    )
    assert d["displayName"] == "Projekt" and d["valueDisplayName"] == "Webbplats relansering"
    dup = await bc_client.post(url, {"code": "PROJEKT", "valueCode": "4006"})
    assert (dup.status, dup.error_code) == (400, "Application_DialogException")
    assert dup.error_message.startswith("The dimension set line already exists.")
    listed = (await bc_client.get(url)).body["value"]
    assert [x["id"] for x in listed] == [d["id"]]
    no_etag = await bc_client.patch(f"{url}({d['id']})", {"valueCode": "4006"})
    assert no_etag.error_code == "BadRequest_InvalidToken"
    changed = await bc_client.patch(
        f"{url}({d['id']})", {"valueCode": "4006"}, headers={"If-Match": d["@odata.etag"]}
    )
    assert changed.status == 200 and changed.body["valueCode"] == "4006"
    bad = await bc_client.patch(
        f"{url}({d['id']})", {"code": "AVDELNING"}, headers={"If-Match": "*"}
    )
    assert bad.error_message.startswith('The "id" and "code" fields cannot be modified.')


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"valueCode": "100"}, 'The "id" or "code" field must be filled in.'),
        ({"code": "AVDELNING"}, 'The "valueId" or "valueCode" field must be filled in.'),
        ({"code": "NOPE", "valueCode": "100"}, 'The "code" does not match to a Dimension.'),
        (
            {"code": "AVDELNING", "valueCode": "999"},
            'The "valueCode" does not match to a Dimension Value.',
        ),
        (
            {"id": "d1000000-0000-4000-8000-000000000001", "code": "AVDELNING", "valueCode": "1"},
            "The dimension field values do not match to a specific Dimension.",
        ),
    ],
)
async def test_dimension_set_line_errors(
    bc_client: BCClient, body: dict[str, str], text: str
) -> None:
    """bc-api §4.9 error texts (Application_DialogException)."""
    inv = await new_invoice(bc_client)
    line_id = (await bc_client.get(f"salesInvoices({inv['id']})/salesInvoiceLines")).body["value"][
        0
    ]["id"]
    resp = await bc_client.post(f"salesInvoiceLines({line_id})/dimensionSetLines", body)
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert resp.error_message.startswith(text)


async def test_dimension_set_lines_need_a_parent(bc_client: BCClient) -> None:
    """bc-api §4.9 'You must get to the parent first to get to/create a dimension set line.' —
    the two texts of [BCApps] page 30022 (ParentNotSpecifiedErr / ParentIDRequiredErr)."""
    got = await bc_client.get("dimensionSetLines")
    assert (got.status, got.error_code) == (400, "Application_DialogException")
    assert got.error_message.startswith(
        "You must get to the parent first to get to the dimension set line."
    )
    made = await bc_client.post("dimensionSetLines", {"code": "PROJEKT", "valueCode": "4005"})
    assert made.error_message.startswith(
        "You must get to the parent first to create a dimension set line."
    )


async def test_header_dimensions_update_shortcut_fields(bc_client: BCClient) -> None:
    """bc-api §4.9 last rule: setting header dims updates shortcutDimension1/2Code."""
    inv = await new_invoice(bc_client)
    resp = await bc_client.post(
        f"salesInvoices({inv['id']})/dimensionSetLines", {"code": "AVDELNING", "valueCode": "300"}
    )
    assert resp.status == 201
    head = (await bc_client.get(f"salesInvoices({inv['id']})")).body
    assert head["shortcutDimension2Code"] == "300"
    assert head["@odata.etag"] != inv["@odata.etag"]


# ---- §4.11 posting ------------------------------------------------------------------------------


async def test_post_keeps_id_renumbers_and_opens(bc_client: BCClient) -> None:
    """bc-api §4.11: Microsoft.NAV.post → 204; the same id keeps working, number becomes the posted
    number, status Draft → Open; posting again → 'The action can be applied to a draft invoice
    only.'"""
    inv = await new_invoice(bc_client)
    resp = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert resp.status == 204
    posted = (await bc_client.get(f"salesInvoices({inv['id']})")).body
    assert (posted["number"], posted["status"]) == ("103001", "Open")
    assert posted["totalAmountIncludingTax"] == inv["totalAmountIncludingTax"]
    again = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert (again.status, again.error_code) == (400, "Application_DialogException")
    assert again.error_message.startswith("The action can be applied to a draft invoice only.")
    second = await new_invoice(bc_client, ext="M-2")
    await bc_client.post(f"salesInvoices({second['id']})/Microsoft.NAV.post")
    assert (await bc_client.get(f"salesInvoices({second['id']})")).body["number"] == "103002"


async def test_posted_invoice_is_read_only(bc_client: BCClient) -> None:
    """bc-api §4.11: a posted invoice cannot be changed (lines and line dimensions included)."""
    inv = await new_invoice(bc_client)
    line_id = (await bc_client.get(f"salesInvoices({inv['id']})/salesInvoiceLines")).body["value"][
        0
    ]["id"]
    await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert (
        await bc_client.patch(
            f"salesInvoices({inv['id']})",
            {"externalDocumentNumber": "X"},
            headers={"If-Match": "*"},
        )
    ).status == 400
    assert (
        await bc_client.post(
            f"salesInvoiceLines({line_id})/dimensionSetLines",
            {"code": "PROJEKT", "valueCode": "4005"},
        )
    ).status == 400


async def test_posting_checks_the_customer(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §4.11 posting validation: customer blocked → error. A customer without posting
    groups already fails the create (bc-api Corrections 5), see
    test_emulator_conformance_invoices.py."""
    inv = await new_invoice(bc_client)
    await emulator.control.seed(
        {
            "tenants": [
                {
                    "id": emulator.tenant_id,
                    "environments": [
                        {
                            "name": "Production",
                            "companies": [
                                {
                                    "name": emulator.company_name,
                                    "customers": [{"number": "10000", "blocked": "Invoice"}],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )
    resp = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert resp.status == 400
    assert "blocked with type Invoice" in resp.error_message
    blocked_all = await bc_client.post("salesInvoices", {"customerNumber": "30000"})
    assert "blocked with type All" in blocked_all.error_message


async def test_posting_checks_the_accounts_still_exist(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §4.11: each line's G/L account must exist at posting."""
    inv = await new_invoice(bc_client, line("3051"))
    await emulator.control.delete("gl_account", "3051", at=emulator.company_ref)
    resp = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert (resp.status, resp.error_code) == (400, "Internal_RecordNotFound")
    assert "3051" in resp.error_message


# ---- §4.13/§4.14 purchase invoices (expense import) ---------------------------------------------


async def test_expense_import_query(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-contract 'Expenses (import)' / bc-api §4.13-§4.15: postingDate ge + lastModifiedDateTime
    gt
    filters and $expand=purchaseInvoiceLines($expand=dimensionSetLines); drafts visible by
    status."""
    watermark = "2020-01-01T00:00:00.000Z"
    url = (
        "purchaseInvoices?$filter=postingDate ge 2026-01-01 and "
        f"lastModifiedDateTime gt {watermark}"
        "&$expand=purchaseInvoiceLines($expand=dimensionSetLines)"
    )
    invoices = (await bc_client.get(url)).body["value"]
    by_no = {i["number"]: i for i in invoices}
    assert set(by_no) == {"108001", "108002", "108003", "P-INV100001"}
    assert by_no["P-INV100001"]["status"] == "Draft"
    assert by_no["108003"]["status"] == "Paid"
    first = by_no["108001"]["purchaseInvoiceLines"]
    dims = [{d["code"]: d["valueCode"] for d in ln["dimensionSetLines"]} for ln in first]
    assert dims == [{"PROJEKT": "4005", "AVDELNING": "200"}, {"AVDELNING": "100"}]
    assert first[0]["unitCost"] == 250 and first[0]["amountExcludingTax"] == 500
    posted = (await bc_client.get("purchaseInvoices?$filter=status ne 'Draft'")).body["value"]
    assert {i["number"] for i in posted} == {"108001", "108002", "108003"}
    latest = max(i["lastModifiedDateTime"] for i in invoices)
    assert (await bc_client.get(f"purchaseInvoices?$filter=lastModifiedDateTime gt {latest}")).body[
        "value"
    ] == []
    added = await emulator.control.add_purchase_invoice(
        {
            "number": "108010",
            "posting_date": "2026-04-01",
            "lines": [{"account": "6110", "unit_cost": 75, "dimensions": {"PROJEKT": "4001"}}],
        },
        at=emulator.company_ref,
    )
    newer = (
        await bc_client.get(f"purchaseInvoices?$filter=lastModifiedDateTime gt {latest}")
    ).body["value"]
    assert [i["id"] for i in newer] == [added["id"]]


async def test_purchase_lines_at_company_level_and_draft_posting(bc_client: BCClient) -> None:
    """bc-api §4.14 (same access rule as sales lines) and §4.13 (Microsoft.NAV.post)."""
    resp = await bc_client.get("purchaseInvoiceLines")
    assert resp.error_message.startswith(
        "You must specify an Id or a Document Id to get the lines."
    )
    draft = (await bc_client.get("purchaseInvoices?$filter=status eq 'Draft'")).body["value"][0]
    assert (
        await bc_client.post(f"purchaseInvoices({draft['id']})/Microsoft.NAV.post")
    ).status == 204
    posted = (await bc_client.get(f"purchaseInvoices({draft['id']})")).body
    assert (posted["status"], posted["number"]) == ("Open", "108004")


async def test_other_url_forms(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §1.1: `…/api/v2.0/{entitySet}?company={id}`, the tenant omitted from the URL (taken
    from the token; UNCONFIRMED for app-only tokens → accepted) and the service document."""
    by_param = await bc_client.get(f"{emulator.api_root}/customers?company={emulator.company_id}")
    assert sorted(c["number"] for c in by_param.body["value"]) == ["10000", "20000", "30000"]
    no_tenant = await bc_client.get(f"/v2.0/{emulator.environment}/api/v2.0/companies")
    assert no_tenant.status == 200
    service = await bc_client.get(f"{emulator.api_root}/")
    assert "customers" in [s["name"] for s in service.body["value"]]
    counted = await bc_client.get("customers?$count=true&$top=1")
    assert counted.body["@odata.count"] == 3 and len(counted.body["value"]) == 1


async def test_posting_refuses_blocked_dimension_values(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §4.11 posting validation: a blocked dimension value on a line stops posting."""
    inv = await new_invoice(
        bc_client, line(dimensionSetLines=[{"code": "PROJEKT", "valueCode": "4001"}])
    )
    url = f"{emulator.odata_url()}/DimensionValues(Dimension_Code='PROJEKT',Code='4001')"
    assert (await bc_client.patch(url, {"Blocked": True}, headers={"If-Match": "*"})).status == 200
    resp = await bc_client.post(f"salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert (resp.status, resp.error_code) == (400, "Application_DialogException")
    assert "PROJEKT - 4001 is blocked" in resp.error_message


async def test_line_rules_from_the_lines_page(bc_client: BCClient) -> None:
    """bc-api §4.12 ('documentId'/'sequence'/'lineObjectNumber' cannot be changed; texts from
    [BCApps] APIV2 - Sales Invoice Lines and codeunit Sales Invoice Aggregator)."""
    inv = await new_invoice(bc_client, line(sequence=10000))
    lines_url = f"salesInvoices({inv['id']})/salesInvoiceLines"
    dup = await bc_client.post(lines_url, line(sequence=10000))
    assert dup.error_message.startswith("You cannot insert a line because a line already exists.")
    line_id = (await bc_client.get(lines_url)).body["value"][0]["id"]
    star = {"If-Match": "*"}
    seq = await bc_client.patch(f"salesInvoiceLines({line_id})", {"sequence": 20000}, headers=star)
    assert seq.error_message.startswith('The value for "sequence" cannot be modified.')
    obj = await bc_client.patch(
        f"salesInvoiceLines({line_id})", {"lineObjectNumber": "3011"}, headers=star
    )
    assert obj.error_message.startswith('The value for "lineObjectNumber" cannot be modified.')
    no_doc = await bc_client.post("salesInvoiceLines", line())
    assert no_doc.error_message.startswith("You must specify a document id to get the lines.")
    other = "11111111-2222-4333-8444-555555555555"
    missing = await bc_client.post("salesInvoiceLines", {**line(), "documentId": other})
    assert missing.error_message.startswith("No document with the specified ID exists.")
    ok = await bc_client.post("salesInvoiceLines", {**line(), "documentId": inv["id"]})
    assert ok.status == 201 and ok.body["sequence"] == 20000
    untyped = await bc_client.post(lines_url, {"lineObjectNumber": "3010", "quantity": 1})
    assert untyped.status == 400  # lineType defaults to Comment: a number is a Standard Text


async def test_currencies_are_validated(bc_client: BCClient) -> None:
    """[BCApps] APIV2 - Customers / Sales Invoices: currencyCode must be a Currency ('The
    "currencyCode" does not match to a Currency.'); the LCY code or blank means local currency."""
    bad = await bc_client.post("customers", {"displayName": "X", "currencyCode": "XYZ"})
    assert bad.error_message.startswith('The "currencyCode" does not match to a Currency.')
    eur = await bc_client.post("customers", {"displayName": "Euro AB", "currencyCode": "EUR"})
    assert eur.status == 201 and eur.body["currencyId"] != "00000000-0000-0000-0000-000000000000"
    lcy = await bc_client.post("customers", {"displayName": "Krona AB", "currencyCode": "SEK"})
    assert lcy.body["currencyCode"] == "SEK"
    assert lcy.body["currencyId"] == "00000000-0000-0000-0000-000000000000"
    inv = await new_invoice(bc_client, customer="20000")
    assert inv["currencyCode"] == "EUR"
    bad_inv = await bc_client.post(
        "salesInvoices", {"customerNumber": "10000", "currencyCode": "XYZ"}
    )
    assert bad_inv.error_message.startswith('The "currencyCode" does not match to a Currency.')
