"""Emulator conformance: ODataV4 page web services and company-name decoding (bc-api §1.3).

Each test names the section of /work/shared/reference/bc-api.md (or bc-contract.md) it holds the
emulator to.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.emulator.fixtures import BCClient, EmulatorHandle

WEAK_ETAG = re.compile(r'^W/"[A-Za-z0-9+/=]+"$')


def encode_company(name: str) -> str:
    """bc-contract 'Roots': double ', then percent-encode the name as one path segment."""
    return quote(name.replace("'", "''"), safe="")


async def test_dimension_values_service_lists_with_odata_annotations(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-contract table (DimensionValues: Dimension_Code, Code, Name, Blocked) and bc-api §1.3
    (answers carry @odata.context, @odata.etag, value)."""
    resp = await bc_client.get(
        f"{emulator.odata_url()}/DimensionValues?$filter=Dimension_Code eq 'AVDELNING'"
    )
    assert resp.status == 200
    assert resp.body["@odata.context"].endswith(
        "/ODataV4/$metadata#Company('CRONUS%20Sverige%20AB')/DimensionValues"
    )
    rows = resp.body["value"]
    assert [(r["Dimension_Code"], r["Code"], r["Name"], r["Blocked"]) for r in rows] == [
        ("AVDELNING", "100", "Administration", False),
        ("AVDELNING", "200", "Konsulting", False),
        ("AVDELNING", "300", "Försäljning", False),
    ]
    assert all(WEAK_ETAG.match(r["@odata.etag"]) for r in rows)


async def test_create_dimension_value_and_see_it_in_api_v2(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-contract 'Projects': POST ODATA/DimensionValues {Dimension_Code, Code, Name} creates a
    value that API v2.0 dimensionValues then finds (bc-api §0.1: the only standard write path)."""
    resp = await bc_client.post(
        f"{emulator.odata_url()}/DimensionValues",
        {"Dimension_Code": "PROJEKT", "Code": "4010", "Name": "Nytt projekt"},
    )
    assert resp.status == 201, resp.body
    assert resp.body["Code"] == "4010"
    dim = (await bc_client.get("dimensions?$filter=code eq 'PROJEKT'")).body["value"][0]
    found = await bc_client.get(
        f"dimensionValues?$filter=dimensionId eq {dim['id']} and code eq '4010'"
    )
    assert [v["displayName"] for v in found.body["value"]] == ["Nytt projekt"]


async def test_create_dimension_value_errors(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §5.1: duplicate → Internal_EntityWithSameKeyExists (409); unknown dimension →
    Internal_InvalidTableRelation (400); Name over 50 → Application_StringExceededLength."""
    url = f"{emulator.odata_url()}/DimensionValues"
    dup = await bc_client.post(url, {"Dimension_Code": "PROJEKT", "Code": "4005", "Name": "x"})
    assert (dup.status, dup.error_code) == (409, "Internal_EntityWithSameKeyExists")
    unknown = await bc_client.post(url, {"Dimension_Code": "NOPE", "Code": "1", "Name": "x"})
    assert (unknown.status, unknown.error_code) == (400, "Internal_InvalidTableRelation")
    assert "(NOPE)" in unknown.error_message
    long = await bc_client.post(
        url, {"Dimension_Code": "PROJEKT", "Code": "4011", "Name": "n" * 51}
    )
    assert (long.status, long.error_code) == (400, "Application_StringExceededLength")


async def test_rename_dimension_value_with_if_match(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-contract 'Projects' rename: PATCH DimensionValues(Dimension_Code='…',Code='…') {Name}
    with If-Match (bc-api §5.2 rules apply to ODataV4 too)."""
    url = f"{emulator.odata_url()}/DimensionValues(Dimension_Code='PROJEKT',Code='4005')"
    assert (await bc_client.patch(url, {"Name": "Ny"})).error_code == "BadRequest_InvalidToken"
    before = (await bc_client.get(url)).body
    resp = await bc_client.patch(url, {"Name": "Webbplats 2.0"}, headers={"If-Match": "*"})
    assert resp.status == 200 and resp.body["Name"] == "Webbplats 2.0"
    stale = await bc_client.patch(url, {"Name": "x"}, headers={"If-Match": before["@odata.etag"]})
    assert (stale.status, stale.error_code) == (409, "Request_EntityChanged")
    missing = await bc_client.get(
        f"{emulator.odata_url()}/DimensionValues(Dimension_Code='PROJEKT',Code='0000')"
    )
    assert missing.status == 404


async def test_customer_card_posting_groups(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-contract 'Customers' posting groups: PATCH ODATA/CustomerCard('{number}') with
    Gen_Bus_Posting_Group and Customer_Posting_Group, If-Match: *; the customer's groups change."""
    created = await bc_client.post("customers", {"number": "10006", "displayName": "Acme AB"})
    assert created.status == 201
    url = f"{emulator.odata_url()}/CustomerCard('10006')"
    card = (await bc_client.get(url)).body
    assert (card["No"], card["Name"], card["Gen_Bus_Posting_Group"]) == ("10006", "Acme AB", "")
    resp = await bc_client.patch(
        url,
        {"Gen_Bus_Posting_Group": "EXPORT", "Customer_Posting_Group": "KUNDER-EXP"},
        headers={"If-Match": "*"},
    )
    assert resp.status == 200
    assert (resp.body["Gen_Bus_Posting_Group"], resp.body["Customer_Posting_Group"]) == (
        "EXPORT",
        "KUNDER-EXP",
    )
    state = await emulator.control.company_state(emulator.company_ref)
    cust = next(c for c in state["customers"] if c["number"] == "10006")
    assert (cust["genBusPostingGroup"], cust["customerPostingGroup"]) == ("EXPORT", "KUNDER-EXP")
    keyed = await bc_client.get(f"{emulator.odata_url()}/CustomerCard(No='10006')")
    assert keyed.status == 200


async def test_customer_card_unknown_posting_group(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §5.1: a code missing from the related table → Internal_InvalidTableRelation (400),
    e.g. after the admin deleted the posting group the config points at."""
    await emulator.control.delete("gen_bus_posting_group", "EXPORT", at=emulator.company_ref)
    resp = await bc_client.patch(
        f"{emulator.odata_url()}/CustomerCard('10000')",
        {"Gen_Bus_Posting_Group": "EXPORT"},
        headers={"If-Match": "*"},
    )
    assert (resp.status, resp.error_code) == (400, "Internal_InvalidTableRelation")
    assert "Gen. Business Posting Group" in resp.error_message


async def test_posting_group_lists(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-contract 'Verify' step 5: GenBusinessPostingGroups / CustomerPostingGroups (Code,
    Description)."""
    gen = (await bc_client.get(f"{emulator.odata_url()}/GenBusinessPostingGroups")).body["value"]
    assert [g["Code"] for g in gen] == ["INRIKES", "EXPORT", "EU"]
    assert all(g["Description"] for g in gen)
    cust = (await bc_client.get(f"{emulator.odata_url()}/CustomerPostingGroups")).body["value"]
    assert [g["Code"] for g in cust] == ["KUNDER", "KUNDER-EXP"]


async def test_unpublished_service_is_an_unknown_segment(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §1.3 (services must be published; UNCONFIRMED answer → 404
    BadRequest_ResourceNotFound)."""
    await emulator.control.set_service("CustomerCard", False, at=emulator.company_ref)
    resp = await bc_client.get(f"{emulator.odata_url()}/CustomerCard")
    assert (resp.status, resp.error_code) == (404, "BadRequest_ResourceNotFound")
    assert resp.error_message.startswith("Resource not found for the segment 'CustomerCard'.")
    await emulator.control.set_service("Kunder", True, at=emulator.company_ref, page="21")
    assert (await bc_client.get(f"{emulator.odata_url()}/Kunder('10000')")).body[
        "Name"
    ] == "Adatum Konsult AB"
    other = await bc_client.get(
        f"{emulator.odata_url(emulator_other := 'CRONUS International Ltd.')}/DimensionValues"
    )
    assert other.status == 404, emulator_other


async def test_company_by_id_and_by_query_option(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §1.3: Company(Id=<guid>) and ?company='<name>' select the same company."""
    root = f"/v2.0/{emulator.tenant_id}/{emulator.environment}/ODataV4"
    by_id = await bc_client.get(
        f"{root}/Company(Id={emulator.company_id})/GenBusinessPostingGroups"
    )
    assert by_id.status == 200 and len(by_id.body["value"]) == 3
    by_q = await bc_client.get(f"{root}/GenBusinessPostingGroups?company='CRONUS%20Sverige%20AB'")
    assert by_q.status == 200 and len(by_q.body["value"]) == 3
    companies = await bc_client.get(f"{root}/Company")
    assert emulator.company_name in [c["Name"] for c in companies.body["value"]]


async def test_company_names_are_case_sensitive(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §1.3: the company name is case-sensitive."""
    resp = await bc_client.get(
        f"{emulator.odata_url('cronus sverige ab')}/GenBusinessPostingGroups"
    )
    assert (resp.status, resp.error_code) == (404, "Internal_CompanyNotFound")


@pytest.mark.parametrize(
    "name",
    [
        "Bygg & Montage AB",
        "Nord/Syd Handel AB",
        "O'Brien's Konsult AB",
        "Kaffe, Te och Mer AB",
        "Åkesson Ärlig Östlund AB",
        "CRONUS USA, Inc.",
        "Test (Sverige) AB",
    ],
)
async def test_company_names_with_special_characters(
    bc_client: BCClient, emulator: EmulatorHandle, name: str
) -> None:
    """bc-api §1.3: Company('…') is percent-decoded from the raw path segment (so %2F stays inside
    it), then the OData literal is unquoted ('' → '); spaces, /, ', &, comma, Å Ä Ö all work."""
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
                                    "name": name,
                                    "gen_bus_posting_groups": [{"code": "G1"}],
                                    "services": {"GenBusinessPostingGroups": True},
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )
    env_root = f"{emulator.url}/v2.0/{emulator.tenant_id}/Production"
    url = f"{env_root}/ODataV4/Company('{encode_company(name)}')"
    resp = await bc_client.get(f"{url}/GenBusinessPostingGroups", encoded=True)
    assert resp.status == 200, resp.body
    assert [g["Code"] for g in resp.body["value"]] == ["G1"]
    assert (
        f"#Company('{encode_company(name)}')/GenBusinessPostingGroups"
        in resp.body["@odata.context"]
    )
    literal = quote("'" + name.replace("'", "''") + "'", safe="")
    api = await bc_client.get(
        f"{emulator.api_root}/companies?$filter=name%20eq%20{literal}", encoded=True
    )
    assert [c["name"] for c in api.body["value"]] == [name]
    log = await emulator.control.requests(path="GenBusinessPostingGroups", limit=1)
    assert log[0]["path"].endswith(
        f"/ODataV4/Company('{name.replace(chr(39), chr(39) * 2)}')/GenBusinessPostingGroups"
    )
