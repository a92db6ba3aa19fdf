"""The BC client against the emulator over real HTTPS with real msal: every call of
bc-contract.md, error mapping, company names, TLS trust."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.emulator.fixtures import EmulatorHandle
from tests.emulator.seed import AVDELNING_ID, DEMO, PROJEKT_ID
from tests.emulator.server import CompanyRef, ControlClient, EmulatorProcess
from tests.emulator.tls import generate
from tests.support.settings import FAST, emulator_settings
from worker.app import bc_hub
from worker.bc import (
    BcAuthError,
    BcCompanyNotFound,
    BcConflict,
    BcConnection,
    BcEnvironmentNotFound,
    BcHub,
    BcNotFound,
    BcServiceNotPublished,
    BcUnavailable,
    BcValidationError,
    LineDimension,
)
from worker.bc.auth import TokenProvider
from worker.bc.http import Principal, Transport


@pytest.fixture
async def hub(emulator: EmulatorHandle, tmp_path: Path) -> AsyncIterator[BcHub]:
    async with bc_hub(emulator_settings(tmp_path, emulator), options=FAST) as h:
        yield h


def demo(hub: BcHub, **overrides: str) -> BcConnection:
    values = {
        "tenant_id": DEMO.tenant_id,
        "client_secret": DEMO.client_secret,
        "environment": DEMO.environment,
        "company_name": DEMO.company_name,
        **overrides,
    }
    return hub.connection(hub.credentials(**values))


@pytest.fixture
def conn(hub: BcHub) -> BcConnection:
    return demo(hub)


# --- companies and setup ----------------------------------------------------------------------


async def test_company_is_found_from_url_encoded_input(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    conn = demo(hub, company_name="CRONUS%20Sverige%20AB")
    assert conn.credentials.company_name == "CRONUS Sverige AB"
    names = {c.name for c in await conn.list_companies()}
    assert names == {DEMO.company_name, DEMO.other_company_name}
    assert await conn.company_id() == DEMO.company_id
    info = await conn.company_information()
    assert info.country == "SE"
    setup = await conn.general_ledger_setup()
    assert setup.dimension_codes == ("PROJEKT", "AVDELNING")
    assert setup.local_currency_code == "SEK"
    # One token for all of it: msal's cache (and ours) is reused.
    stats = await emulator.control.subject_stats(DEMO.tenant_id, DEMO.client_id)
    assert stats is not None and stats["token_requests"] == 1


async def test_unknown_company_lists_the_existing_ones(hub: BcHub) -> None:
    with pytest.raises(BcCompanyNotFound) as info:
        await demo(hub, company_name="CRONUS Norge AS").company_id()
    assert info.value.field == "company_name"
    assert set(info.value.available) == {DEMO.company_name, DEMO.other_company_name}
    assert "CRONUS Norge AS" in info.value.message


async def test_unknown_environment_is_a_field_error(hub: BcHub) -> None:
    with pytest.raises(BcEnvironmentNotFound) as info:
        await demo(hub, environment="Sandbox").list_companies()
    assert info.value.field == "environment"
    assert info.value.code == "NoEnvironment"
    assert "'Sandbox'" in info.value.message
    with pytest.raises(BcEnvironmentNotFound):
        demo(hub, environment="../Production")  # never reaches a URL


async def test_dimensions_and_values(conn: BcConnection) -> None:
    dims = {d.code: d for d in await conn.dimensions()}
    assert set(dims) == {"PROJEKT", "AVDELNING", "KOSTNADSSTÄLLE"}
    assert dims["PROJEKT"].id == PROJEKT_ID
    value = await conn.find_dimension_value(PROJEKT_ID, "4005")
    assert value is not None and value.display_name == "Webbplats relansering"
    assert await conn.find_dimension_value(PROJEKT_ID, "9999") is None
    assert await conn.find_dimension_value(AVDELNING_ID, "4005") is None


async def test_dimension_value_create_and_rename(
    conn: BcConnection, emulator: EmulatorHandle
) -> None:
    long_name = "Ett projekt med ett namn som är längre än femtio tecken i Moment"
    created = await conn.create_dimension_value("PROJEKT", "4100", long_name)
    assert (created.dimension_code, created.code, created.name) == (
        "PROJEKT",
        "4100",
        long_name[:50],
    )
    found = await conn.find_dimension_value(PROJEKT_ID, "4100")
    assert found is not None and found.display_name == long_name[:50]
    renamed = await conn.rename_dimension_value("PROJEKT", "4100", "Omdöpt projekt")
    assert renamed.name == "Omdöpt projekt"
    found = await conn.find_dimension_value(PROJEKT_ID, "4100")
    assert found is not None and found.display_name == "Omdöpt projekt"
    with pytest.raises(BcConflict):  # a concurrent create won: the caller finds it and goes on
        await conn.create_dimension_value("PROJEKT", "4100", "again")


async def test_posting_groups(conn: BcConnection) -> None:
    assert [g.code for g in await conn.gen_bus_posting_groups()] == ["INRIKES", "EXPORT", "EU"]
    groups = await conn.customer_posting_groups()
    assert [(g.code, g.description) for g in groups] == [
        ("KUNDER", "Kundfordringar inrikes"),
        ("KUNDER-EXP", "Kundfordringar export"),
    ]


@pytest.mark.parametrize(
    ("service", "page", "call"),
    [
        ("GenBusinessPostingGroups", "Gen. Business Posting Groups (page 312)", "gen_bus"),
        ("CustomerCard", "Customer Card (page 21)", "card"),
        ("DimensionValues", "Dimension Values (page 537)", "dim"),
    ],
)
async def test_unpublished_service_names_the_page(
    conn: BcConnection, emulator: EmulatorHandle, service: str, page: str, call: str
) -> None:
    await emulator.control.set_service(service, False, at=emulator.company_ref)
    with pytest.raises(BcServiceNotPublished) as info:
        if call == "gen_bus":
            await conn.gen_bus_posting_groups()
        elif call == "card":
            await conn.set_customer_posting_groups("10000", "EXPORT", "KUNDER-EXP")
        else:
            await conn.rename_dimension_value("PROJEKT", "4005", "x")
    assert info.value.service == service and info.value.page == page
    assert page in str(info.value)


async def test_missing_records_on_pages_are_not_missing_services(hub: BcHub) -> None:
    conn = demo(hub)
    with pytest.raises(BcNotFound) as info:
        await conn.set_customer_posting_groups("NOPE", "INRIKES", "KUNDER")
    assert type(info.value) is BcNotFound and info.value.code == "Internal_RecordNotFound"
    with pytest.raises(BcNotFound) as info:
        await conn.rename_dimension_value("PROJEKT", "NOPE", "x")
    assert type(info.value) is BcNotFound
    with pytest.raises(BcCompanyNotFound) as company:
        await demo(hub, company_name="Nope AB").gen_bus_posting_groups()
    assert company.value.field == "company_name" and "'Nope AB'" in company.value.message


# --- customers --------------------------------------------------------------------------------


async def test_customer_lifecycle(conn: BcConnection, emulator: EmulatorHandle) -> None:
    assert await conn.find_customer("10006") is None
    terms = {t.code: t for t in await conn.payment_terms()}
    created = await conn.create_customer(
        {
            "number": "10006",
            "displayName": "Acme AB",
            "addressLine1": "Storgatan 1",
            "city": "Stockholm",
            "postalCode": "111 22",
            "country": "SE",
            "email": "billing@acme.se",
            "paymentTermsId": terms["30 DAGAR"].id,
        }
    )
    assert created.number == "10006" and created.etag and created.blocked == " "
    found = await conn.find_customer("10006")
    assert found is not None and found.id == created.id

    updated = await conn.update_customer(
        created.id, created.etag, {"displayName": "Acme Sverige AB"}
    )
    assert updated.display_name == "Acme Sverige AB"
    with pytest.raises(BcConflict) as info:  # the etag we read first is stale now
        await conn.update_customer(created.id, created.etag, {"displayName": "Lost update"})
    assert info.value.code == "Request_EntityChanged" and info.value.correlation_id

    card = await conn.set_customer_posting_groups("10006", "EXPORT", "KUNDER-EXP")
    assert (card.gen_bus_posting_group, card.customer_posting_group) == ("EXPORT", "KUNDER-EXP")
    state = await emulator.control.company_state(emulator.company_ref)
    row = next(c for c in state["customers"] if c["number"] == "10006")
    assert row["displayName"] == "Acme Sverige AB"
    assert (row["genBusPostingGroup"], row["customerPostingGroup"]) == ("EXPORT", "KUNDER-EXP")


async def test_unknown_posting_group_is_a_validation_error(conn: BcConnection) -> None:
    with pytest.raises(BcValidationError) as info:
        await conn.set_customer_posting_groups("10000", "NOPE", "KUNDER")
    assert info.value.status == 400 and not info.value.transient
    assert info.value.correlation_id


# --- sales invoices ---------------------------------------------------------------------------


def invoice_payload(ext: str, lines: int = 2) -> dict[str, object]:
    return {
        "customerNumber": "10000",
        "externalDocumentNumber": ext,
        "invoiceDate": "2026-11-20",
        "postingDate": "2026-11-20",
        "dueDate": "2026-12-20",
        "customerPurchaseOrderReference": "PO-77",
        "salesInvoiceLines": [
            {
                "sequence": (i + 1) * 10000,
                "lineType": "Account",
                "lineObjectNumber": "3010",
                "description": f"Consulting {i}",
                "quantity": 10,
                "unitPrice": 1200.0,
                "discountPercent": 0,
                "taxCode": "25",
            }
            for i in range(lines)
        ],
    }


async def test_invoice_export_flow(conn: BcConnection, emulator: EmulatorHandle) -> None:
    assert await conn.find_sales_invoice("1864", "10000") is None
    draft = await conn.create_sales_invoice(invoice_payload("1864"))
    assert draft.is_draft and draft.external_document_number == "1864"
    again = await conn.find_sales_invoice("1864", "10000")
    assert again is not None and again.id == draft.id and again.is_draft
    assert await conn.find_sales_invoice("1864", "20000") is None

    lines = await conn.sales_invoice_lines(draft.id)
    assert [ln.line_object_number for ln in lines] == ["3010", "3010"]
    assert lines[0].line_type == "Account"
    result = await conn.set_line_dimensions(
        [LineDimension(ln.id, "PROJEKT", "4005") for ln in lines]
        + [(ln.id, "AVDELNING", "200") for ln in lines]
    )
    assert (result.created, result.updated) == (4, 0)
    # Again with another project: every line already has the dimension, so it is patched.
    result = await conn.set_line_dimensions([(ln.id, "PROJEKT", "4006") for ln in lines])
    assert (result.created, result.updated) == (0, 2)

    await conn.post_sales_invoice(draft.id)
    posted = await conn.get_sales_invoice(draft.id)
    assert posted.status == "Open" and posted.number != draft.number
    found = await conn.find_sales_invoice("1864", "10000")
    assert found is not None and not found.is_draft and found.number == posted.number

    state = await emulator.control.company_state(emulator.company_ref)
    inv = next(i for i in state["salesInvoices"] if i["id"] == draft.id)
    dims = [
        {d["code"]: d["valueCode"] for d in ln["dimensionSetLines"]}
        for ln in inv["salesInvoiceLines"]
    ]
    assert dims == [{"PROJEKT": "4006", "AVDELNING": "200"}] * 2


async def test_credit_memo_export_flow(conn: BcConnection, emulator: EmulatorHandle) -> None:
    """salesCreditMemos calls: the credit memo and the credited invoices in one $batch (a
    stray draft of the invoice's number sorts after the posted one), create applied to the
    invoice, line dimensions through salesCreditMemoLines, post, read back."""
    stray = await conn.create_sales_invoice(invoice_payload("1870", lines=1))
    invoice = await conn.create_sales_invoice(invoice_payload("1870", lines=1))
    await conn.post_sales_invoice(invoice.id)
    await emulator.control.clear_requests()
    memo, invoices = await conn.find_sales_credit_memo_and_invoices("K-1870", "10000", "1870")
    assert memo is None
    assert [(i.id, i.is_draft) for i in invoices] == [(invoice.id, False), (stray.id, True)]
    requests = [r for r in await emulator.control.requests() if "/oauth2/" not in r["path"]]
    assert [r["path"].rsplit("/", 1)[-1] for r in requests if r["batch_parent"] is None] == [
        "$batch"
    ]
    invoice_body = invoice_payload("K-1870", lines=1)
    payload = {
        "customerNumber": "10000",
        "externalDocumentNumber": "K-1870",
        "creditMemoDate": "2026-11-30",
        "invoiceId": invoice.id,
        "salesCreditMemoLines": invoice_body["salesInvoiceLines"],
    }
    draft = await conn.create_sales_credit_memo(payload)
    assert draft.is_draft and draft.applied and len(draft.lines) == 1
    result = await conn.set_line_dimensions(
        [(draft.lines[0].id, "PROJEKT", "4005")], lines_set="salesCreditMemoLines"
    )
    assert (result.created, result.updated) == (1, 0)
    assert [ln.id for ln in await conn.sales_credit_memo_lines(draft.id)] == [draft.lines[0].id]
    await conn.post_sales_credit_memo(draft.id)
    posted = await conn.get_sales_credit_memo(draft.id)
    assert posted.status == "Paid" and posted.number != draft.number
    assert posted.invoice_number != "" and posted.invoice_id == invoice.id
    found = await conn.find_sales_credit_memo("K-1870", "10000")
    assert found is not None and found.surely_posted
    assert found.lines[0].dimensions == (("PROJEKT", "4005"),)


async def test_line_dimensions_are_batched_by_100(
    conn: BcConnection, emulator: EmulatorHandle
) -> None:
    draft = await conn.create_sales_invoice(invoice_payload("2001", lines=70))
    lines = await conn.sales_invoice_lines(draft.id)
    await emulator.control.clear_requests()
    wanted = [(ln.id, "PROJEKT", "4005") for ln in lines] + [
        (ln.id, "AVDELNING", "300") for ln in lines
    ]
    result = await conn.set_line_dimensions(wanted)
    assert result.created == 140
    batches = await emulator.control.requests(method="POST", path="$batch")
    assert len(batches) == 2  # 100 + 40 operations
    state = await emulator.control.company_state(emulator.company_ref)
    inv = next(i for i in state["salesInvoices"] if i["id"] == draft.id)
    assert all(len(ln["dimensionSetLines"]) == 2 for ln in inv["salesInvoiceLines"])


async def test_bad_line_dimension_value_is_raised(conn: BcConnection) -> None:
    draft = await conn.create_sales_invoice(invoice_payload("2002", lines=1))
    (line,) = await conn.sales_invoice_lines(draft.id)
    with pytest.raises(BcValidationError) as info:
        await conn.set_line_dimensions([(line.id, "PROJEKT", "NOPE")])
    assert "valueCode" in info.value.message


async def test_posting_twice_is_a_validation_error(conn: BcConnection) -> None:
    draft = await conn.create_sales_invoice(invoice_payload("2003", lines=1))
    await conn.post_sales_invoice(draft.id)
    with pytest.raises(BcValidationError):
        await conn.post_sales_invoice(draft.id)


# --- purchase invoices ------------------------------------------------------------------------


async def test_purchase_invoices_since(conn: BcConnection, emulator: EmulatorHandle) -> None:
    pages = [p async for p in conn.purchase_invoices_since(date(2026, 1, 1), page_size=2)]
    assert len(pages) == 2  # 4 invoices, 2 a page; the draft is left out
    numbers = [i.number for p in pages for i in p.invoices]
    assert numbers == ["108001", "108002", "108003"]
    first = pages[0].invoices[0]
    assert first.lines[0].dimension("PROJEKT") is not None
    assert first.lines[0].dimension("PROJEKT").value_code == "4005"  # type: ignore[union-attr]
    assert first.lines[1].dimension("PROJEKT") is None
    watermark = max(p.last_modified for p in pages if p.last_modified)

    late = await emulator.control.add_purchase_invoice(
        {
            "number": "108010",
            "posting_date": "2026-04-01",
            "last_modified": "2099-01-01T00:00:00.123Z",
            "lines": [{"account": "4010", "unit_cost": 10, "dimensions": {"PROJEKT": "4006"}}],
        },
        at=emulator.company_ref,
    )
    newer = [p async for p in conn.purchase_invoices_since(date(2026, 1, 1), watermark)]
    assert [i.id for p in newer for i in p.invoices] == [late["id"]]
    assert newer[-1].last_modified == datetime(2099, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    march = [p async for p in conn.purchase_invoices_since(date(2026, 3, 1))]
    assert [i.number for p in march for i in p.invoices] == ["108003", "108010"]


async def test_purchase_invoice_statuses_by_id(
    conn: BcConnection, emulator: EmulatorHandle
) -> None:
    """The re-check of imported invoices: one request, `id eq … or …`, only the fields needed;
    a cancelled invoice is still a posted one in the change read (its lines get withdrawn)."""
    ids = {
        i.number: i.id
        async for p in conn.purchase_invoices_since(date(2026, 1, 1))
        for i in p.invoices
    }
    await emulator.control.cancel_purchase_invoice(at=emulator.company_ref, number="108002")
    await emulator.control.clear_requests()
    unknown = "00000000-0000-4000-8000-000000000009"
    got = await conn.purchase_invoice_statuses([ids["108001"], ids["108002"], unknown])
    assert sorted((i.number, i.status, i.is_canceled) for i in got) == [
        ("108001", "Open", False),
        ("108002", "Canceled", True),
    ]
    [read] = await emulator.control.requests(path="purchaseInvoices")
    assert "$select=id,number,status,lastModifiedDateTime" in read["query"]
    assert f"id eq {ids['108001']} or id eq {ids['108002']} or id eq {unknown}" in read["query"]
    assert await conn.purchase_invoice_statuses([]) == []
    pages = [p async for p in conn.purchase_invoices_since(date(2026, 1, 1))]
    canceled = [i for p in pages for i in p.invoices if i.number == "108002"]
    assert canceled and canceled[0].is_posted and canceled[0].is_canceled


# --- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"client_secret": "wrong-secret-value"}, "client_secret"),
        ({"tenant_id": "11111111-2222-4333-8444-555555555555"}, "tenant_id"),
        ({"tenant_id": "nobody.example"}, "tenant_id"),
        ({"client_id": "99999999-8888-4777-8666-555555555555"}, "client_id"),
        ({"tenant_id": "not a tenant"}, "tenant_id"),
    ],
)
async def test_entra_errors_map_to_fields(
    hub: BcHub, overrides: dict[str, str], field: str
) -> None:
    with capture_logs() as logs, pytest.raises(BcAuthError) as info:
        await demo(hub, **overrides).get_token()
    err = info.value
    assert err.field == field
    for text in (str(err), repr(err), err.message, repr(logs)):
        assert DEMO.client_secret not in text and "wrong-secret-value" not in text


async def test_app_not_enabled_in_bc(hub: BcHub, emulator: EmulatorHandle) -> None:
    await emulator.control.set_app(DEMO.tenant_id, DEMO.client_id, enabled_in_bc=False)
    conn = demo(hub)
    with pytest.raises(BcAuthError) as info:
        await conn.list_companies()
    assert info.value.status == 401 and info.value.code == "Authentication_InvalidCredentials"
    assert "Microsoft Entra Applications" in info.value.message
    stats = await emulator.control.subject_stats(DEMO.tenant_id, DEMO.client_id)
    assert stats is not None and stats["token_requests"] == 2  # one fresh token, then give up


async def test_a_fixed_secret_is_used_at_once(hub: BcHub) -> None:
    with pytest.raises(BcAuthError):
        await demo(hub, client_secret="wrong-secret-value").get_token()
    assert await demo(hub).get_token()  # another secret → another msal app, no cached error


# --- TLS --------------------------------------------------------------------------------------


async def test_untrusted_certificate_fails_closed(emulator: EmulatorHandle, tmp_path: Path) -> None:
    other_ca = generate(tmp_path, ("127.0.0.1",)).cert
    for ca in (other_ca, None):  # another CA, or only the system's
        async with bc_hub(emulator_settings(tmp_path, emulator, ca_file=ca), options=FAST) as hub:
            with pytest.raises(BcUnavailable) as info:
                await demo(hub).get_token()
            assert info.value.code == "TlsError" and not info.value.retryable

    # BC itself (tokens from a trusted Entra, BC behind an untrusted certificate).
    tokens = TokenProvider(emulator.url, ca_file=emulator.ca_file)
    transport = Transport(base_url=emulator.url, tokens=tokens, ca_file=other_ca, options=FAST)
    try:
        with pytest.raises(BcUnavailable) as info:
            await transport.request(
                Principal(DEMO.tenant_id, DEMO.client_id, SecretStr(DEMO.client_secret)),
                "GET",
                f"{emulator.api_root}/companies",
                resource="companies",
            )
        assert info.value.code == "TlsError"
    finally:
        await transport.close()
    requests = await emulator.control.requests(path="companies")
    assert requests == []  # nothing was sent over the untrusted connection


# --- hostile company names --------------------------------------------------------------------

HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("aZ09 '/%&?#+=,;:()[]@!$*~\\\"äöÅ€漢.")),
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE)
def test_hostile_company_names_round_trip(bc_emulator: EmulatorProcess, name: str) -> None:
    asyncio.run(_round_trip(bc_emulator, name))


async def _round_trip(proc: EmulatorProcess, name: str) -> None:
    async with ControlClient(proc.url, proc.ca_file) as control:
        await control.seed(
            {
                "tenants": [
                    {
                        "id": DEMO.tenant_id,
                        "apps": [{"client_id": DEMO.client_id, "secret": DEMO.client_secret}],
                        "environments": [
                            {
                                "name": DEMO.environment,
                                "companies": [
                                    {
                                        "name": name,
                                        "gen_bus_posting_groups": [
                                            {"code": "RUNDTUR", "description": name}
                                        ],
                                        "services": {"GenBusinessPostingGroups": True},
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
        )
        ref = CompanyRef(DEMO.tenant_id, DEMO.environment, name)
        company = await control.company_state(ref)
        with tempfile.TemporaryDirectory() as tmp:  # hypothesis: no function-scoped tmp_path
            hub_settings = emulator_settings(Path(tmp), proc)
        async with bc_hub(hub_settings, options=FAST) as hub:
            # Users paste the name URL-encoded; both forms must reach the same company.
            inputs = [quote(name, safe="")]
            if "%" not in name:
                inputs.append(name)
            for typed in inputs:
                conn = demo(hub, company_name=typed)
                assert conn.credentials.company_name == name
                assert await conn.company_id() == company["id"]
                groups = await conn.gen_bus_posting_groups()  # ODataV4 Company('…')
                assert [(g.code, g.description) for g in groups] == [("RUNDTUR", name)]
