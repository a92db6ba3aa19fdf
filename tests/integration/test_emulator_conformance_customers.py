"""Emulator conformance: the Customer table's rules and payment-term formulas as real BC runs them.

Each test names the AL file of [BCApps] (29.0) it holds the emulator to (bc-api.md, "Corrections
checked against the AL source" 1-3, and issue 15's "Also check" items). Over real HTTPS with a real
token, like every conformance test.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.fixtures import BCClient, EmulatorHandle

DIALOG = "Application_DialogException"


async def seed_company(emulator: EmulatorHandle, **company: Any) -> None:
    """Seed more into the demo company (seeding is additive)."""
    body = {"name": emulator.company_name, **company}
    environment = {"name": emulator.environment, "companies": [body]}
    await emulator.control.seed(
        {"tenants": [{"id": emulator.tenant_id, "environments": [environment]}]}
    )


async def customer(bc: BCClient, number: str) -> dict[str, Any]:
    rows = (await bc.get(f"customers?$filter=number eq '{number}'")).body["value"]
    assert len(rows) == 1, rows
    return dict(rows[0])


async def create(bc: BCClient, number: str, **fields: Any) -> dict[str, Any]:
    resp = await bc.post("customers", {"number": number, "displayName": f"Kund {number}", **fields})
    assert resp.status == 201, resp.body
    return dict(resp.body)


async def patch(bc: BCClient, row: dict[str, Any], body: dict[str, Any]) -> Any:
    return await bc.patch(f"customers({row['id']})", body, headers={"If-Match": "*"})


# ---- Corrections 1: VAT registration number ----------------------------------------------------


async def test_vat_number_over_20_characters_is_bcs_string_length_error(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Customer.Table.al field(86; "VAT Registration No."; Text[20]); the API page's variable is
    Text[50] (APIV2Customers.Page.al), so 21..50 characters fail at the table and more at the page,
    both with BC's string-length error. The Customer Card binds the table field (20)."""
    too_long = "SE5566778899010000001"  # 21
    resp = await bc_client.post(
        "customers", {"number": "61001", "displayName": "A", "taxRegistrationNumber": too_long}
    )
    assert (resp.status, resp.error_code) == (400, "Application_StringExceededLength")
    assert "less than or equal to 20 characters" in resp.error_message
    assert too_long in resp.error_message
    resp = await bc_client.post(
        "customers", {"number": "61001", "displayName": "A", "taxRegistrationNumber": "9" * 51}
    )
    assert (resp.status, resp.error_code) == (400, "Application_StringExceededLength")
    assert "less than or equal to 50 characters" in resp.error_message
    card = await bc_client.patch(
        f"{emulator.odata_url()}/CustomerCard('10000')",
        {"VAT_Registration_No": too_long},
        headers={"If-Match": "*"},
    )
    assert (card.status, card.error_code) == (400, "Application_StringExceededLength")
    assert (await bc_client.get("customers?$filter=number eq '61001'")).body["value"] == []


async def test_vat_number_must_match_one_of_the_countrys_formats(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """VATRegistrationNoFormat.Table.al `Test`/`Compare`: with formats for the country (the demo
    company has Contoso's SE formats) a value matching none fails with
    Error('%1%2', ErrorMsg, "The following formats are acceptable: …"); ErrorMsg names the
    customer only when it exists already (Customer.Get), so an insert gets the list alone. A
    matching value is stored upper-cased (Customer.Table.al OnValidate); a country without formats
    checks nothing."""
    org_number = await bc_client.post(
        "customers",
        {
            "number": "61002",
            "displayName": "A",
            "country": "SE",
            "taxRegistrationNumber": "556677-8899",
        },
    )
    assert (org_number.status, org_number.error_code) == (400, DIALOG)
    assert org_number.error_message.startswith(
        "The following formats are acceptable: SE##########01, ##########01"
    )
    ok = await create(bc_client, "61002", country="SE", taxRegistrationNumber="se556677889901")
    assert ok["taxRegistrationNumber"] == "SE556677889901"
    abroad = await create(bc_client, "61003", country="NO", taxRegistrationNumber="556677-8899")
    assert abroad["taxRegistrationNumber"] == "556677-8899"

    existing = await customer(bc_client, "10000")
    resp = await patch(bc_client, existing, {"taxRegistrationNumber": "SE12"})
    assert (resp.status, resp.error_code) == (400, DIALOG)
    assert resp.error_message.startswith(
        "The entered VAT Registration number for Customer 10000 is not in agreement with the "
        "format specified for Country/Region Code SE."
    )
    assert "The following formats are acceptable: SE##########01, ##########01" in (
        resp.error_message
    )
    assert (await customer(bc_client, "10000"))["taxRegistrationNumber"] == ""


async def test_a_country_change_checks_the_current_vat_number_against_the_new_country(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Customer.Table.al Country/Region Code OnValidate: `if "Country/Region Code" <>
    xRec."Country/Region Code" then VATRegistrationValidation()`: the VAT number BC already has
    must fit the new country's formats (Contoso's NO formats here)."""
    await seed_company(
        emulator,
        vat_registration_formats={"NO": ["NO ### ### ### MVA", "### ### ### MVA", "#########"]},
    )
    row = await create(bc_client, "61004", country="SE", taxRegistrationNumber="SE556677889901")
    resp = await patch(bc_client, row, {"country": "NO"})
    assert (resp.status, resp.error_code) == (400, DIALOG)
    assert "Country/Region Code NO" in resp.error_message
    assert "NO ### ### ### MVA, ### ### ### MVA, #########" in resp.error_message
    cleared = await patch(bc_client, row, {"taxRegistrationNumber": ""})
    assert cleared.status == 200
    moved = await patch(bc_client, row, {"country": "NO"})
    assert moved.status == 200 and moved.body["country"] == "NO"


# ---- Corrections 2: phone numbers --------------------------------------------------------------


async def test_a_phone_number_with_letters_is_a_field_error(bc_client: BCClient) -> None:
    """Customer.Table.al Phone No. OnValidate: `if Char.IsLetter("Phone No."[i]) then
    FieldError("Phone No.", PhoneNoCannotContainLettersErr)` ("must not contain letters"; the
    FieldError text as in W1 Tests/Misc/UTCustomerTable.Codeunit.al). Any Unicode letter counts."""
    for phone in ("+46 8 123 45 ext. 12", "växel", "08-123 45 67 (Åsa)"):
        resp = await bc_client.post(
            "customers", {"number": "61005", "displayName": "A", "phoneNumber": phone}
        )
        assert (resp.status, resp.error_code) == (400, "Application_FieldValidationException")
        assert resp.error_message.startswith(
            "Phone No. must not contain letters in Customer No.='61005'."
        ), resp.error_message
    ok = await create(bc_client, "61005", phoneNumber="+46 (0)8-123 45 67")
    assert ok["phoneNumber"] == "+46 (0)8-123 45 67"


# ---- Corrections 3: country change, control order, Post Code table -----------------------------


async def test_a_country_change_clears_city_post_code_and_state_in_control_order(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Customer.Table.al Country/Region Code OnValidate → PostCode.CheckClearPostCodeCityCounty
    (Foundation/Address/PostCode.Table.al): city, post code and county are blanked when the old
    country was not blank and differs. APIV2Customers.Page.al validates city, state, country,
    postalCode in that control order, so one PATCH moving abroad loses the city but keeps the post
    code; the country alone first, then the address, keeps both. From a blank country nothing is
    cleared."""
    row = await create(
        bc_client, "61006", city="Stockholm", state="Sthlm", country="SE", postalCode="111 22"
    )
    resp = await patch(bc_client, row, {"city": "Oslo", "country": "NO", "postalCode": "0154"})
    assert resp.status == 200
    assert (resp.body["city"], resp.body["state"], resp.body["postalCode"]) == ("", "", "0154")
    assert resp.body["country"] == "NO"

    row = await create(bc_client, "61007", city="Stockholm", country="SE", postalCode="111 22")
    first = await patch(bc_client, row, {"country": "DK"})
    assert (first.body["city"], first.body["postalCode"]) == ("", "")
    second = await patch(bc_client, row, {"city": "København", "postalCode": "1050"})
    assert (second.body["city"], second.body["postalCode"], second.body["country"]) == (
        "København",
        "1050",
        "DK",
    )

    blank = await create(bc_client, "61008", city="Oslo", postalCode="0154")
    kept = await patch(bc_client, blank, {"country": "NO"})
    assert (kept.body["city"], kept.body["postalCode"]) == ("Oslo", "0154")


async def test_the_customer_card_validates_the_country_before_the_city(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """CustomerCard.Page.al lays out Country/Region Code before City and Post Code, so on the card
    the same change keeps the new city (same table trigger, other control order)."""
    await create(bc_client, "61009", city="Stockholm", country="SE", postalCode="111 22")
    resp = await bc_client.patch(
        f"{emulator.odata_url()}/CustomerCard('61009')",
        {"City": "Oslo", "Country_Region_Code": "NO", "Post_Code": "0154"},
        headers={"If-Match": "*"},
    )
    assert resp.status == 200, resp.body
    assert (resp.body["City"], resp.body["Post_Code"], resp.body["Country_Region_Code"]) == (
        "Oslo",
        "0154",
        "NO",
    )


async def test_a_post_code_known_to_bc_overwrites_city_and_country(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """PostCode.Table.al ValidatePostCode (UseDialog false without a GUI): the first Post Code row
    with that code, preferring the customer's country and then its city, sets post code, city,
    country and county; a code known only for another country moves the customer there (the AL
    removes the country filter again). ValidateCity does nothing without a GUI (`if not GuiAllowed
    then exit`)."""
    await seed_company(
        emulator,
        post_codes=[
            {"code": "0154", "city": "OSLO", "country": "NO"},
            {"code": "1000", "city": "Bruxelles", "country": "BE", "county": "Brussel"},
            {"code": "1000", "city": "Ljubljana", "country": "SI"},
        ],
    )
    oslo = await create(bc_client, "61010", city="Oslo", country="NO", postalCode="0154")
    assert (oslo["city"], oslo["country"]) == ("OSLO", "NO")
    moved = await create(bc_client, "61011", city="København", country="DK", postalCode="1000")
    assert (moved["city"], moved["country"], moved["state"]) == ("Bruxelles", "BE", "Brussel")
    slovenia = await create(bc_client, "61012", city="Ljubljana", country="SI", postalCode="1000")
    assert (slovenia["city"], slovenia["country"]) == ("Ljubljana", "SI")
    unknown = await create(bc_client, "61013", city="Bergen", country="NO", postalCode="5003")
    assert (unknown["city"], unknown["postalCode"]) == ("Bergen", "5003")
    city_only = await patch(bc_client, unknown, {"city": "OSLO"})
    assert (city_only.body["city"], city_only.body["postalCode"]) == ("OSLO", "5003")


# ---- Also check: VAT bus. posting group ---------------------------------------------------------


async def test_the_gen_bus_posting_group_brings_its_default_vat_bus_posting_group(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Customer.Table.al Gen. Bus. Posting Group OnValidate: when it changes and the group's
    "Auto Insert Default" is on (InitValue true, GenBusinessPostingGroup.Table.al
    ValidateVatBusPostingGroup), VAT Bus. Posting Group := the group's "Def. VAT Bus. Posting
    Group". The API shows the VAT bus. group as taxAreaId (its SystemId, UpdateTaxAreaId) and
    setting taxAreaId sets the group (UpdateTaxAreaCode)."""
    state = await emulator.control.company_state(emulator.company_ref)
    ids = {g["code"]: g["id"] for g in state["vatBusPostingGroups"]}
    card_url = f"{emulator.odata_url()}/CustomerCard('10000')"
    before = (await bc_client.get(card_url)).body
    assert (before["Gen_Bus_Posting_Group"], before["VAT_Bus_Posting_Group"]) == (
        "INRIKES",
        "INRIKES",
    )
    assert (await customer(bc_client, "10000"))["taxAreaId"] == ids["INRIKES"]

    moved = await bc_client.patch(
        card_url, {"Gen_Bus_Posting_Group": "EXPORT"}, headers={"If-Match": "*"}
    )
    assert moved.body["VAT_Bus_Posting_Group"] == "EXPORT"
    row = await customer(bc_client, "10000")
    assert (row["taxAreaId"], row["taxAreaDisplayName"]) == (
        ids["EXPORT"],
        "Kunder och leverantörer utanför EU",
    )

    # Set by hand, then the same gen. bus. group again: unchanged (xRec equals Rec).
    by_hand = await patch(bc_client, row, {"taxAreaId": ids["EU"]})
    assert by_hand.status == 200 and by_hand.body["taxAreaId"] == ids["EU"]
    again = await bc_client.patch(
        card_url, {"Gen_Bus_Posting_Group": "EXPORT"}, headers={"If-Match": "*"}
    )
    assert again.body["VAT_Bus_Posting_Group"] == "EU"

    # A group without Auto Insert Default leaves the VAT bus. group alone.
    await seed_company(
        emulator,
        gen_bus_posting_groups=[
            {
                "code": "MANUELL",
                "def_vat_bus_posting_group": "INRIKES",
                "auto_insert_default": False,
            }
        ],
    )
    manual = await bc_client.patch(
        card_url, {"Gen_Bus_Posting_Group": "MANUELL"}, headers={"If-Match": "*"}
    )
    assert manual.body["VAT_Bus_Posting_Group"] == "EU"
    unknown = await patch(bc_client, row, {"taxAreaId": "00000000-0000-0000-0000-00000000abcd"})
    assert unknown.status == 400


# ---- Also check: number series without Manual Nos. ----------------------------------------------


async def test_customer_numbers_from_outside_need_manual_nos(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Customer.Table.al No. OnValidate → TestNoSeries → NoSeries.TestManual(SalesSetup."Customer
    Nos.") (Business Foundation NoSeriesImpl.Codeunit.al): a number the series did not give needs
    the series' Manual Nos., else Error(CannotAssignManuallyErr). Without a number the series
    assigns one."""
    await seed_company(emulator, customer_nos={"code": "KUND", "manual": False})
    resp = await bc_client.post("customers", {"number": "61014", "displayName": "A"})
    assert (resp.status, resp.error_code) == (400, DIALOG)
    assert resp.error_message.startswith(
        "You may not enter numbers manually. If you want to enter numbers manually, please "
        "activate Manual Nos. in No. Series KUND."
    )
    assigned = await bc_client.post("customers", {"displayName": "Utan nummer"})
    assert assigned.status == 201 and assigned.body["number"] == "K10000"
    existing = await customer(bc_client, "10000")
    assert (await patch(bc_client, existing, {"displayName": "Adatum"})).status == 200
    renamed = await patch(bc_client, existing, {"number": "10099"})
    assert (renamed.status, renamed.error_code) == (400, DIALOG)
    await seed_company(emulator, customer_nos={"manual": True})
    assert (await create(bc_client, "61014"))["number"] == "61014"


# ---- Also check: payment terms' DateFormula in the BC user's language ----------------------------


async def test_date_formulas_come_in_the_bc_users_language(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """APIV2PaymentTerms.Page.al exposes the DateFormula field itself, and BC shows a DateFormula
    in the user's language ([Docs] DateFormula data type): French 30 days is `30J` and a quarter
    `1T`, German 30 days `30T`. Stricter reading (languages.py): whatever Accept-Language asks.
    Input is read in that language too; `<…>` is the language-independent notation."""
    en = {
        t["code"]: t["dueDateCalculation"]
        for t in (await bc_client.get("paymentTerms")).body["value"]
    }
    assert en["30 DAGAR"] == "30D"
    await seed_company(
        emulator,
        language="fr-FR",
        payment_terms=[{"code": "1 TRIM", "name": "Un trimestre", "due_date_calculation": "1Q"}],
    )
    resp = await bc_client.get("paymentTerms", headers={"Accept-Language": "en-US"})
    fr = {t["code"]: t["dueDateCalculation"] for t in resp.body["value"]}
    assert (fr["30 DAGAR"], fr["1 TRIM"]) == ("30J", "1T")
    made = await bc_client.post("paymentTerms", {"code": "45 JOURS", "dueDateCalculation": "45J"})
    assert made.status == 201 and made.body["dueDateCalculation"] == "45J"
    neutral = await bc_client.post(
        "paymentTerms", {"code": "10 NEUTRE", "dueDateCalculation": "<10D>"}
    )
    assert neutral.status == 201 and neutral.body["dueDateCalculation"] == "10J"
    english = await bc_client.post("paymentTerms", {"code": "20 DAYS", "dueDateCalculation": "20D"})
    assert (english.status, english.error_code) == (400, "Application_EvaluateException")

    await seed_company(emulator, language="de-DE")
    de = {
        t["code"]: t["dueDateCalculation"]
        for t in (await bc_client.get("paymentTerms")).body["value"]
    }
    assert (de["30 DAGAR"], de["45 JOURS"], de["1 TRIM"]) == ("30T", "45T", "1Q")
