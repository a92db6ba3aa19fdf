"""Invoice export against what real BC does (bc-api.md "Corrections checked against the AL
source" 4, 5, 6, 8): real broker → real consumer → real BC client → the emulator, which follows
the AL (see test_emulator_conformance_invoices.py).

- 4: an unposted invoice can show ``Open`` (released) or ``In Review`` (pending approval); a
  released draft is posted, one held for approval ends as ``waiting``, never as exported.
- 5: a customer without posting groups fails the draft create; it is repaired there.
- 6: a VAT code BC would cut to 20 characters makes the event invalid.
- 8: the external document number is upper-cased, so a lower-case one is found again.
"""

from __future__ import annotations

import json
from typing import Any

from tests.emulator.fixtures import BCClient
from tests.support import factories as f
from tests.support.exports import ORG, Exports
from worker import metrics
from worker.events.models import ExportedData
from worker.messaging import headers as H

INVOICE_CREATED = "moment.invoice.created"


def _invoice(number: str, *, vat_code: str = "25", cust: str = "10000") -> dict[str, Any]:
    customer = f.customer(cust)
    project = f.project("4005", department="100", cust=customer)
    line = {
        "description": "Consulting",
        "quantity": 3,
        "unit_price": 1000.0,
        "account_number": "3010",
        "vat_code": vat_code,
        "project": project,
    }
    return f.invoice(number, cust=customer, lines=[line])


async def _calls(exports: Exports, since: int, suffix: str) -> list[tuple[str, int | None]]:
    """(method, status) of the BC requests after ``since`` whose path ends with ``suffix``."""
    return [
        (r["method"], r["status"])
        for r in await exports.bc_requests(since)
        if r["path"].endswith(suffix)
    ]


async def _seed_vat_group(exports: Exports, code: str, percent: float) -> None:
    """A VAT product posting group in the BC company."""
    company = {"name": exports.emulator.company_name, "vat": {code: percent}}
    environment = {"name": exports.emulator.environment, "companies": [company]}
    await exports.emulator.control.seed(
        {"tenants": [{"id": exports.emulator.tenant_id, "environments": [environment]}]}
    )


def _waiting_count() -> float:
    return float(metrics.EVENTS_HANDLED.labels(INVOICE_CREATED, "waiting")._value.get())


# ---- 4: released and pending-approval drafts -----------------------------------------------------


async def test_a_released_draft_is_posted_not_reported_as_posted(
    exports: Exports, bc_client: BCClient
) -> None:
    # A draft of Moment invoice 8301 is in BC already (an earlier delivery made it, with its
    # dimensions) and someone released it there: BC shows it as "Open", like a posted invoice.
    made = await bc_client.post(
        "salesInvoices",
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "8301",
            "salesInvoiceLines": [
                {
                    "sequence": 10000,
                    "lineType": "Account",
                    "lineObjectNumber": "3010",
                    "quantity": 3,
                    "unitPrice": 1000,
                    "taxCode": "25",
                    "dimensionSetLines": [
                        {"code": "PROJEKT", "valueCode": "4005"},
                        {"code": "AVDELNING", "valueCode": "100"},
                    ],
                }
            ],
        },
    )
    assert made.status == 201, made.body
    draft_number = made.body["number"]
    released = await exports.emulator.control.set_sales_invoice_status(
        "Released", at=exports.emulator.company_ref, external_document_number="8301"
    )
    assert released["status"] == "Open"
    await exports.listen_exported()

    since = await exports.last_seq()
    event_id = await exports.send(INVOICE_CREATED, {"invoice": _invoice("8301")})
    assert await exports.done(event_id) == ["succeeded"]

    posted = await exports.posted("8301")
    assert posted["draftNumber"] == draft_number and posted["number"] != draft_number
    assert await _calls(exports, since, "/Microsoft.NAV.post") == [("POST", 204)]
    assert await _calls(exports, since, "/salesInvoices") == [("GET", 200)]  # found, not made
    [got] = await exports.exported(1)
    data = ExportedData.model_validate(got.json["data"])
    assert (data.bc_number, data.status) == (posted["number"], "Open")


async def test_a_released_draft_without_its_dimensions_is_neither_posted_nor_reported(
    exports: Exports, bc_client: BCClient
) -> None:
    # Released in BC before its line dimensions were set: "Open" like a posted invoice, but
    # posting it would book the revenue without project and department.
    made = await bc_client.post(
        "salesInvoices",
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "8304",
            "salesInvoiceLines": [
                {
                    "sequence": 10000,
                    "lineType": "Account",
                    "lineObjectNumber": "3010",
                    "quantity": 3,
                    "unitPrice": 1000,
                    "taxCode": "25",
                }
            ],
        },
    )
    assert made.status == 201, made.body
    await exports.emulator.control.set_sales_invoice_status(
        "Released", at=exports.emulator.company_ref, external_document_number="8304"
    )
    await exports.listen_exported()
    since = await exports.last_seq()
    event_id = await exports.send(INVOICE_CREATED, {"invoice": _invoice("8304")})
    assert await exports.done(event_id) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    message = dead.headers[H.ERROR_MESSAGE]
    assert dead.headers[H.ERROR_CODE] == "BC-VALIDATION"
    assert made.body["number"] in message and "reopen it in Business Central" in message
    assert {r["method"] for r in await exports.bc_requests(since)} == {"GET"}  # nothing written
    [still] = await exports.invoices("8304")
    assert still["documentStatus"] == "Released"
    assert await exports.exported(0) == []


async def test_an_invoice_held_for_approval_waits_and_is_posted_once_approved(
    exports: Exports,
) -> None:
    control, at = exports.emulator.control, exports.emulator.company_ref
    await control.set_sales_invoice_approval(True, at=at)
    await exports.listen_exported()
    invoice = _invoice("8302")
    waiting_before = _waiting_count()

    # 1. BC's approval workflow refuses the post: waiting, acked, not a dead letter.
    first = await exports.send(INVOICE_CREATED, {"invoice": invoice})
    assert await exports.done(first) == ["waiting"]
    [draft] = await exports.invoices("8302")
    assert (draft["status"], draft["documentStatus"]) == ("Draft", "Open")
    [report] = exports.tracker.waiting
    assert (report.org, report.object_type, report.moment_number) == (ORG, "invoice", "8302")
    assert (report.code, report.ref) == ("BC-INVOICE-AWAITING-APPROVAL", draft["number"])
    assert "must be approved in Business Central" in report.message
    assert draft["number"] in report.message and "CRONUS Sverige AB" in report.message
    # The status route's record (GET …/status, section "objects").
    outcomes = {o.object_type: o.to_dict() for o in await exports.runtime.store.outcomes(ORG)}
    assert outcomes["invoice"]["last_waiting_ref"] == "8302"
    assert outcomes["invoice"]["last_waiting_code"] == "BC-INVOICE-AWAITING-APPROVAL"
    assert outcomes["invoice"]["last_waiting_message"] == report.message
    assert outcomes["invoice"]["last_failure_code"] is None

    # 2. Sent for approval in BC ("In Review"): waiting again, and nothing is written or posted.
    await control.set_sales_invoice_status("Pending Approval", at=at, invoice_id=draft["id"])
    since = await exports.last_seq()
    second = await exports.send(INVOICE_CREATED, {"invoice": invoice})
    assert await exports.done(second) == ["waiting"]
    assert [r["method"] for r in await exports.bc_requests(since)] == ["GET"]
    assert "is waiting for approval in Business Central" in exports.tracker.waiting[-1].message

    # 3. Approved (Released): the next export posts it and reports the posted number.
    await control.set_sales_invoice_status("Released", at=at, invoice_id=draft["id"])
    third = await exports.send(INVOICE_CREATED, {"invoice": invoice})
    assert await exports.done(third) == ["succeeded"]
    posted = await exports.posted("8302")
    assert posted["draftNumber"] == draft["number"]
    [got] = await exports.exported(1)  # only now: no bc.invoice.exported while waiting
    assert ExportedData.model_validate(got.json["data"]).bc_number == posted["number"]

    assert await exports.dead_count() == 0
    assert _waiting_count() - waiting_before == 2
    assert len(await exports.invoices("8302")) == 1


async def test_a_redelivered_posted_invoice_is_not_posted_again(exports: Exports) -> None:
    # A posted invoice shows "Open" too: BC's answer to the post tells it is posted already.
    await exports.listen_exported()
    invoice = _invoice("8303")
    first = await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-8303")
    assert await exports.done(first) == ["succeeded"]
    posted = await exports.posted("8303")
    since = await exports.last_seq()
    await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-8303")
    assert await exports.done("ev-8303", 2) == ["succeeded", "succeeded"]
    refused = [r for r in await exports.bc_requests(since) if r["method"] == "POST"]
    assert [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in refused] == [
        ("Microsoft.NAV.post", 400)
    ]
    assert len(await exports.bc_requests(since)) == 2  # find + the refused post
    got = await exports.exported(2)
    assert {ExportedData.model_validate(g.json["data"]).bc_number for g in got} == {
        posted["number"]
    }


# ---- 5: posting groups are repaired where BC checks them -----------------------------------------


async def test_a_customer_without_posting_groups_is_repaired_at_the_draft_create(
    exports: Exports,
) -> None:
    await exports.seed_customer("50081", posting_groups=False)
    since = await exports.last_seq()
    event_id = await exports.send(INVOICE_CREATED, {"invoice": _invoice("8310", cust="50081")})
    assert await exports.done(event_id) == ["succeeded"]

    creates = [
        (r["status"], r["code"])
        for r in await exports.bc_requests(since)
        if r["method"] == "POST" and r["path"].endswith("/salesInvoices")
    ]
    # BC refused the first draft (Customer.TestField on the Sell-to validation); the groups were
    # set from the snapshot and the second create went through. No draft was made and deleted.
    assert creates == [(400, "Application_FieldValidationException"), (201, None)]
    requests = await exports.bc_requests(since)
    assert not [r for r in requests if r["method"] == "DELETE"]
    assert any(r["method"] == "PATCH" and "CustomerCard" in r["path"] for r in requests)
    customer = await exports.customer("50081")
    assert customer is not None
    assert (customer["genBusPostingGroup"], customer["customerPostingGroup"]) == (
        "INRIKES",
        "KUNDER",
    )
    [posted] = await exports.invoices("8310")
    assert "documentStatus" not in posted  # posted


# ---- 6: a VAT code BC would cut ------------------------------------------------------------------


async def test_a_vat_code_longer_than_twenty_characters_is_an_invalid_event(
    exports: Exports,
) -> None:
    # BC would keep "MOMS-25-STANDARD-SVE" of it, silently, and post with whatever VAT group has
    # that code (here one with another rate).
    await _seed_vat_group(exports, "MOMS-25-STANDARD-SVE", 12)
    since = await exports.last_seq()
    invoice = _invoice("8320")
    invoice["lines"].append({**invoice["lines"][0], "vat_code": "MOMS-25-STANDARD-SVERIGE"})
    event_id = await exports.send(INVOICE_CREATED, {"invoice": invoice})
    assert await exports.done(event_id) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CLASS] == "invalid"
    assert dead.headers[H.ERROR_CODE] == "EVENT-INVALID"
    message = dead.headers[H.ERROR_MESSAGE]
    assert "lines[1].vat_code" in message and "'MOMS-25-STANDARD-SVERIGE'" in message
    assert "20" in message
    assert await exports.invoices("8320") == []
    assert await exports.bc_requests(since) == []  # refused before any BC call


async def test_vat_codes_reach_bc_whole(exports: Exports) -> None:
    # Twenty characters is the most BC keeps; such a code arrives unchanged.
    await _seed_vat_group(exports, "MOMS-25-STANDARD-SVE", 25)
    since = await exports.last_seq()
    event_id = await exports.send(
        INVOICE_CREATED, {"invoice": _invoice("8321", vat_code="moms-25-standard-sve")}
    )
    assert await exports.done(event_id) == ["succeeded"]
    [create] = [
        r
        for r in await exports.bc_requests(since)
        if r["method"] == "POST" and r["path"].endswith("/salesInvoices")
    ]
    [sent] = json.loads(create["body"])["salesInvoiceLines"]
    assert sent["taxCode"] == "MOMS-25-STANDARD-SVE"
    posted = await exports.posted("8321")
    [bc_line] = posted["salesInvoiceLines"]
    assert (bc_line["taxCode"], bc_line["taxPercent"]) == ("MOMS-25-STANDARD-SVE", 25)


# ---- 8: a lower-case invoice number --------------------------------------------------------------


async def test_a_lower_case_invoice_number_is_posted_once(exports: Exports) -> None:
    # BC stores the external document number upper-cased (Code[35]); a search for "ab-12" would
    # not find "AB-12" (the emulator's stricter reading), and the redelivery would post again.
    await exports.listen_exported()
    invoice = _invoice("ab-12")
    await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-ab-12")
    assert await exports.done("ev-ab-12") == ["succeeded"]
    await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-ab-12")
    assert await exports.done("ev-ab-12", 2) == ["succeeded", "succeeded"]

    state = await exports.company()
    matching = [i for i in state["salesInvoices"] if i["externalDocumentNumber"].upper() == "AB-12"]
    assert [i["externalDocumentNumber"] for i in matching] == ["AB-12"]
    posts = [
        r
        for r in await exports.bc_requests()
        if r["path"].endswith("/Microsoft.NAV.post") and r["status"] == 204
    ]
    assert len(posts) == 1
    finds = [
        r["query"]
        for r in await exports.bc_requests()
        if r["method"] == "GET" and r["path"].endswith("/salesInvoices")
    ]
    assert finds and all("'AB-12'" in q for q in finds)
    got = await exports.exported(2)
    assert {g.json["data"]["moment_number"] for g in got} == {"ab-12"}  # Moment's own number
