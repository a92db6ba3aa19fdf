"""Each object type end to end (RabbitMQ → worker → BC emulator): the fields land in BC exactly
as bc-contract.md and DESIGN §11 say, and Moment hears back through ``bc.<object>.exported``."""

from __future__ import annotations

import json
from typing import Any

from tests.support import factories as f
from tests.support.exports import ORG, Exports
from tests.support.wait import wait_for
from worker.events.models import ExportedData

CUSTOMER_CREATED = "moment.customer.created"
CUSTOMER_UPDATED = "moment.customer.updated"
PROJECT_CREATED = "moment.project.created"
PROJECT_UPDATED = "moment.project.updated"
INVOICE_CREATED = "moment.invoice.created"


async def test_domestic_and_abroad_customers_land_with_their_posting_groups(
    exports: Exports,
) -> None:
    await exports.listen_exported()
    home = f.customer(
        "50001",
        name="Acme AB",
        website="https://acme.se",
        invoice_address={
            "line1": "Storgatan 1",
            "line2": "Box 12",
            "postal_code": "111 22",
            "city": "Stockholm",
            "country_code": "se",
        },
    )
    # Abroad, with its own currency; the config's abroad groups differ from BC's templates
    # (EXPORT), so EU proves the CustomerCard call set them.
    away = f.customer("50002", name="Fjord AS", currency_code="NOK", country="NO")
    await exports.send(CUSTOMER_CREATED, {"customer": home})
    await exports.send(CUSTOMER_CREATED, {"customer": away})
    await wait_for(lambda: _all_exported(exports, "50001", "50002"))

    se = await exports.customer("50001")
    assert se is not None
    assert {k: se[k] for k in _CUSTOMER_FIELDS} == {
        "displayName": "Acme AB",
        "addressLine1": "Storgatan 1",
        "addressLine2": "Box 12",
        "city": "Stockholm",
        "postalCode": "111 22",
        "country": "SE",
        "email": "billing@acme.se",
        "phoneNumber": "+46 8 123 45",
        "website": "https://acme.se",
        "taxRegistrationNumber": "SE556677889901",
    }
    assert (se["genBusPostingGroup"], se["customerPostingGroup"]) == ("INRIKES", "KUNDER")
    no = await exports.customer("50002")
    assert no is not None
    assert no["country"] == "NO" and no["currencyCode"] == "NOK"
    assert (no["genBusPostingGroup"], no["customerPostingGroup"]) == ("EU", "KUNDER-EXP")

    # Local currency goes to BC as blank; 30 days maps to BC's 30-day payment terms.
    [post] = [
        r
        for r in await exports.bc_requests()
        if r["method"] == "POST" and r["path"].endswith("/customers") and "50001" in r["body"]
    ]
    sent = json.loads(post["body"])
    assert sent["currencyCode"] == ""
    terms = {t["id"]: t["code"] for t in (await exports.company())["paymentTerms"]}
    assert terms[sent["paymentTermsId"]] == "30 DAGAR"

    got = await exports.exported(2)
    data = {g.json["data"]["moment_number"]: g.json["data"] for g in got}
    assert data["50001"]["object_type"] == "customer"
    assert data["50001"]["bc_id"] == se["id"] and data["50001"]["bc_number"] == "50001"
    assert {g.routing_key for g in got} == {"bc.customer.exported"}
    assert all(g.json["organizationid"] == ORG for g in got)


_CUSTOMER_FIELDS = (
    "displayName",
    "addressLine1",
    "addressLine2",
    "city",
    "postalCode",
    "country",
    "email",
    "phoneNumber",
    "website",
    "taxRegistrationNumber",
)


async def _all_exported(exports: Exports, *numbers: str) -> bool:
    for number in numbers:
        c = await exports.customer(number)
        if c is None or c["genBusPostingGroup"] not in ("INRIKES", "EU"):
            return False
    return True


async def test_customer_update_changes_the_existing_record(exports: Exports) -> None:
    await exports.send(CUSTOMER_CREATED, {"customer": f.customer("50003")})
    first = await wait_for(lambda: exports.customer("50003"))
    moved = f.customer("50003", name="Acme Group AB", country="DK")
    await exports.send(CUSTOMER_UPDATED, {"customer": moved})

    async def updated() -> dict[str, Any] | None:
        c = await exports.customer("50003")
        return c if c and c["displayName"] == "Acme Group AB" else None

    now = await wait_for(updated)
    assert now["id"] == first["id"]
    assert now["country"] == "DK"
    # Moved abroad: the abroad posting groups now apply.
    await wait_for(lambda: _groups(exports, "50003", ("EU", "KUNDER-EXP")))
    assert len([c for c in (await exports.company())["customers"] if c["number"] == "50003"]) == 1


async def _groups(exports: Exports, number: str, want: tuple[str, str]) -> bool:
    c = await exports.customer(number)
    return c is not None and (c["genBusPostingGroup"], c["customerPostingGroup"]) == want


async def test_project_becomes_a_dimension_value_named_within_50_and_renamed(
    exports: Exports,
) -> None:
    await exports.listen_exported()
    long_name = "Website relaunch for the Nordic region, phase two: content and design"
    await exports.send(PROJECT_CREATED, {"project": f.project("4100", name=long_name)})
    value = await wait_for(lambda: exports.dimension_value("PROJEKT", "4100"))
    assert value["displayName"] == long_name[:50].rstrip()
    assert len(value["displayName"]) <= 50

    await exports.send(PROJECT_UPDATED, {"project": f.project("4100", name="Nordic web")})

    async def renamed() -> bool:
        v = await exports.dimension_value("PROJEKT", "4100")
        return v is not None and v["displayName"] == "Nordic web"

    await wait_for(renamed)
    values = [v for d in (await exports.company())["dimensions"] for v in d["values"]]
    assert [v["code"] for v in values].count("4100") == 1
    got = await exports.exported(2)
    assert {g.routing_key for g in got} == {"bc.project.exported"}
    assert {g.json["data"]["bc_number"] for g in got} == {"4100"}


async def test_invoice_is_posted_with_header_lines_and_department_from_the_object(
    exports: Exports,
) -> None:
    await exports.listen_exported()
    cust = f.customer("10000")  # exists in BC
    p1 = f.project("4005", department="100", tag_code="300", cust=cust)
    p2 = f.project("4006", department="200", tag_code="300", cust=cust)
    invoice = f.invoice(
        "7001",
        cust=cust,
        your_reference="PO-77",
        lines=[
            f.line(p1),
            f.line(p2, description="Workshop", quantity=2, unit_price=950.5, discount_percent=10),
            f.line(
                None,
                description="Travel",
                quantity=1,
                unit_price=300.0,
                account_number="3040",
                vat_code="0",
            ),
        ],
    )
    await exports.send(INVOICE_CREATED, {"invoice": invoice})
    posted = await exports.posted("7001")

    assert posted["status"] == "Open" and posted["number"] == "103001"
    assert posted["customerNumber"] == "10000"
    assert posted["invoiceDate"] == posted["postingDate"] == "2026-11-20"
    assert posted["dueDate"] == "2026-12-20"
    assert posted["customerPurchaseOrderReference"] == "PO-77"
    lines = sorted(posted["salesInvoiceLines"], key=lambda x: x["sequence"])
    assert [
        (
            x["lineType"],
            x["lineObjectNumber"],
            x["description"],
            x["quantity"],
            x["unitPrice"],
            x["discountPercent"],
            x["taxCode"],
        )
        for x in lines
    ] == [
        ("Account", "3010", "Consulting, November", 10, 1200, 0, "25"),
        ("Account", "3010", "Workshop", 2, 950.5, 10, "25"),
        ("Account", "3040", "Travel", 1, 300, 0, "0"),
    ]
    assert [_dims(x) for x in lines] == [
        {"PROJEKT": "4005", "AVDELNING": "100"},
        {"PROJEKT": "4006", "AVDELNING": "200"},
        {},
    ]
    # The local currency (SEK) was sent as blank.
    [create] = [
        r
        for r in await exports.bc_requests()
        if r["method"] == "POST" and r["path"].endswith("/salesInvoices")
    ]
    assert json.loads(create["body"])["currencyCode"] == ""

    [got] = await exports.exported(1)
    assert got.routing_key == "bc.invoice.exported"
    assert got.json["organizationid"] == ORG
    data = ExportedData.model_validate(got.json["data"])
    assert data.moment_number == "7001" and data.moment_id == "i-7001"
    assert data.bc_id == posted["id"]
    assert data.bc_number == "103001" and data.status == "Open"
    assert data.total_including_tax == posted["totalAmountIncludingTax"]
    assert data.total_excluding_tax == posted["totalAmountExcludingTax"]
    assert data.currency_code == "SEK"
    # The status endpoint's record of the last success.
    await exports.runtime.successes.flush()  # successes are written in batches
    outcomes = {o.object_type: o for o in await exports.runtime.store.outcomes(ORG)}
    assert outcomes["invoice"].last_success_ref == "7001"


def _dims(bc_line: dict[str, Any]) -> dict[str, str]:
    return {d["code"]: d["valueCode"] for d in bc_line.get("dimensionSetLines", [])}


async def test_department_from_a_tag_group_and_a_foreign_currency(exports: Exports) -> None:
    await exports.save_config(department_source="tag_group", department_tag_group="Avdelning")
    cust = f.customer("20000", country="DE", currency_code="EUR")  # exists in BC, in EUR
    p = f.project("4005", department="100", tag_code="300", cust=cust)
    await exports.send(
        INVOICE_CREATED,
        {"invoice": f.invoice("7002", cust=cust, currency_code="EUR", lines=[f.line(p)])},
    )
    posted = await exports.posted("7002")
    assert posted["currencyCode"] == "EUR"
    [bc_line] = posted["salesInvoiceLines"]
    assert _dims(bc_line) == {"PROJEKT": "4005", "AVDELNING": "300"}


async def test_a_dimension_added_in_bc_after_a_failure_is_used_at_the_replay(
    exports: Exports,
) -> None:
    await exports.save_config(project_dimension="UPPDRAG")
    first = await exports.send(PROJECT_CREATED, {"project": f.project("4900")})
    assert await exports.done(first) == ["dead_lettered"]
    # The admin adds the dimension in BC; the replayed event then succeeds at once, although the
    # worker had cached the company's dimensions.
    company = {"name": exports.emulator.company_name, "dimensions": [{"code": "UPPDRAG"}]}
    environment = {"name": exports.emulator.environment, "companies": [company]}
    await exports.emulator.control.seed(
        {"tenants": [{"id": exports.emulator.tenant_id, "environments": [environment]}]}
    )
    again = await exports.send(PROJECT_CREATED, {"project": f.project("4900")})
    assert await exports.done(again) == ["succeeded"]
    assert await exports.dimension_value("UPPDRAG", "4900") is not None
