"""Credit notes end to end: real broker → real consumer → real BC client → the emulator, which
follows Microsoft's AL for sales credit memos (test_emulator_conformance_credit_memos.py).

A Moment credit note becomes one posted sales credit memo with line dimensions, applied to the
posted invoice it credits; it waits on the retry ladder while that invoice is not posted, is
dead-lettered with a plain explanation when it never comes, and is refused when the invoice
belongs to another customer. Exactly once under redelivery, racing workers and a crash between
create and post; at most 5 BC requests whatever the line count.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.fixtures import BCClient
from tests.support import factories as f
from tests.support.exports import ORG, Exports
from tests.support.wait import wait_for
from worker.events.models import CreditNoteExportedData, ExportedData
from worker.messaging import headers as H

INVOICE_CREATED = "moment.invoice.created"
CUSTOMER = f.customer("10000")
PORTAL = f.project("4005", department="100", cust=CUSTOMER)
MIGRATION = f.project("4006", department="200", cust=CUSTOMER)


def _line(quantity: float, price: float, project: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {
        "description": "Konsulttimmar",
        "quantity": quantity,
        "unit_price": price,
        "account_number": "3010",
        "vat_code": "25",
        "project": project,
        **over,
    }


def _invoice(number: str, *lines: dict[str, Any], cust: dict[str, Any] = CUSTOMER) -> Any:
    return f.invoice(
        number, cust=cust, lines=list(lines) or [_line(10, 1200, PORTAL), _line(2, 1000, MIGRATION)]
    )


def _credit_note(
    number: str,
    *lines: dict[str, Any],
    credits: str | None = None,
    cust: dict[str, Any] = CUSTOMER,
    **over: Any,
) -> dict[str, Any]:
    note = f.invoice(
        number,
        cust=cust,
        lines=list(lines) or [_line(-2, 1200, PORTAL, description="Kreditering 2 timmar")],
        kind="credit_note",
        **over,
    )
    if credits is not None:
        note["credited_invoice"] = {"id": f"i-{credits}", "number": credits}
    return note


def _dims(line: dict[str, Any]) -> dict[str, str]:
    return {d["code"]: d["valueCode"] for d in line["dimensionSetLines"]}


async def _writes(exports: Exports, suffix: str, since: int = 0) -> list[dict[str, Any]]:
    return [
        r
        for r in await exports.bc_requests(since)
        if r["method"] == "POST" and r["path"].endswith(suffix) and r["status"] in (200, 201, 204)
    ]


async def _post_invoice(exports: Exports, number: str, *lines: dict[str, Any]) -> dict[str, Any]:
    event_id = await exports.send(INVOICE_CREATED, {"invoice": _invoice(number, *lines)})
    assert await exports.done(event_id) == ["succeeded"]
    return await exports.posted(number)


# ---- applied to the posted invoice ---------------------------------------------------------------


async def test_a_credit_note_for_a_posted_invoice_is_one_posted_credit_memo_applied_to_it(
    exports: Exports,
) -> None:
    await exports.listen_exported()
    invoice = await _post_invoice(exports, "8501")
    note = _credit_note("K-8501", credits="8501")
    event_id = await exports.send(INVOICE_CREATED, {"invoice": note})
    assert await exports.done(event_id) == ["succeeded"]

    memo = await exports.posted_credit_memo("K-8501")
    assert (memo["invoiceId"], memo["invoiceNumber"]) == (invoice["id"], invoice["number"])
    # Moment's -2 x 1 200 is a credit of 2 400 (3 000 incl. VAT): positive on the credit memo.
    assert (memo["totalAmountExcludingTax"], memo["totalAmountIncludingTax"]) == (2400, 3000)
    assert memo["status"] == "Paid"  # applied in full: its customer ledger entry is closed
    [bc_line] = memo["salesCreditMemoLines"]
    assert (bc_line["quantity"], bc_line["unitPrice"], bc_line["lineObjectNumber"]) == (
        2,
        1200,
        "3010",
    )
    assert _dims(bc_line) == {"PROJEKT": "4005", "AVDELNING": "100"}
    assert memo["customerNumber"] == "10000" and memo["number"].startswith("104")
    # The invoice carries the credit; it stays open for the rest (17 500 - 3 000).
    [after] = await exports.invoices("8501")
    assert (after["creditedAmount"], after["status"]) == (3000, "Open")
    assert await exports.invoices("K-8501") == []  # no sales invoice was made of it

    got = await exports.exported(2)
    by_type = {g.routing_key: g.json for g in got}
    assert (
        ExportedData.model_validate(by_type["bc.invoice.exported"]["data"]).bc_number
        == (invoice["number"])
    )
    data = CreditNoteExportedData.model_validate(by_type["bc.credit_note.exported"]["data"])
    assert (data.moment_id, data.moment_number, data.bc_id, data.bc_number) == (
        "i-K-8501",
        "K-8501",
        memo["id"],
        memo["number"],
    )
    assert (data.status, data.total_excluding_tax, data.total_including_tax) == (
        "Paid",
        2400,
        3000,
    )
    assert data.currency_code == "SEK"
    assert data.applied_to is not None
    assert data.applied_to.model_dump() == {
        "bc_id": invoice["id"],
        "bc_number": invoice["number"],
        "moment_id": "i-8501",
        "moment_number": "8501",
    }

    # The status route's record: the credit note is an object type of its own.
    await exports.runtime.successes.flush()  # successes are written in batches
    outcomes = {o.object_type: o for o in await exports.runtime.store.outcomes(ORG)}
    assert outcomes["credit_note"].last_success_ref == "K-8501"
    assert outcomes["invoice"].last_success_ref == "8501"


async def test_a_credit_note_without_a_credited_invoice_is_posted_unapplied(
    exports: Exports,
) -> None:
    await exports.listen_exported()
    event_id = await exports.send(INVOICE_CREATED, {"invoice": _credit_note("K-8502")})
    assert await exports.done(event_id) == ["succeeded"]
    memo = await exports.posted_credit_memo("K-8502")
    assert (memo["invoiceNumber"], memo["status"]) == ("", "Open")
    [got] = await exports.exported(1)
    data = CreditNoteExportedData.model_validate(got.json["data"])
    assert data.applied_to is None and data.bc_number == memo["number"]


async def test_a_negative_invoice_without_kind_becomes_a_credit_memo(exports: Exports) -> None:
    # How Moment sent credit invoices before `kind`: an invoice with negative amounts. BC refuses
    # to post a negative sales invoice (Sales-Post), so it is exported as a credit memo.
    await exports.listen_exported()
    since = await exports.last_seq()
    legacy = _invoice("8503", _line(1, -1500, PORTAL), _line(-1, 500, MIGRATION))
    assert "kind" not in legacy
    event_id = await exports.send(INVOICE_CREATED, {"invoice": legacy})
    assert await exports.done(event_id) == ["succeeded"]

    memo = await exports.posted_credit_memo("8503")
    assert (memo["totalAmountExcludingTax"], memo["totalAmountIncludingTax"]) == (2000, 2500)
    assert [(x["quantity"], x["unitPrice"]) for x in memo["salesCreditMemoLines"]] == [
        (1, 1500),
        (1, 500),
    ]
    assert await exports.invoices("8503") == []
    assert not [r for r in await exports.bc_requests(since) if "salesInvoices" in r["path"]]
    [got] = await exports.exported(1)
    assert got.routing_key == "bc.credit_note.exported"


async def test_a_line_that_charges_within_a_credit_note_lowers_the_credit(
    exports: Exports,
) -> None:
    # -3 x 1 000 credited, +1 x 500 charged (a positive line on a credit note): Moment's total is
    # -2 500, so the credit memo's total is +2 500: the charge is a negative quantity there.
    note = _credit_note(
        "K-8504",
        _line(-3, 1000, PORTAL, description="Kreditering"),
        _line(1, 500, MIGRATION, description="Resekostnad"),
    )
    event_id = await exports.send(INVOICE_CREATED, {"invoice": note})
    assert await exports.done(event_id) == ["succeeded"]
    memo = await exports.posted_credit_memo("K-8504")
    assert [(x["quantity"], x["unitPrice"]) for x in memo["salesCreditMemoLines"]] == [
        (3, 1000),
        (-1, 500),
    ]
    assert memo["totalAmountExcludingTax"] == 2500
    assert [_dims(x) for x in memo["salesCreditMemoLines"]] == [
        {"PROJEKT": "4005", "AVDELNING": "100"},
        {"PROJEKT": "4006", "AVDELNING": "200"},
    ]


# ---- order independence: the credited invoice not (yet) in BC ----------------------------------


@pytest.mark.retry_delays(0.5, 1, 2, 4)
async def test_a_credit_note_before_its_invoice_waits_and_is_applied_once_it_is_posted(
    exports: Exports,
) -> None:
    note_id = await exports.send(
        INVOICE_CREATED, {"invoice": _credit_note("K-8510", credits="8510")}
    )

    async def waited() -> bool:
        return "retried" in exports.tracker.outcomes.get(note_id, [])

    await wait_for(waited, 10)
    assert await exports.credit_memos("K-8510") == []  # nothing written while it waits
    assert await exports.dead_count() == 0

    invoice = await _post_invoice(exports, "8510")
    assert await exports.done(note_id, timeout=20) == ["succeeded"]
    assert exports.tracker.outcomes[note_id][0] == "retried"
    memo = await exports.posted_credit_memo("K-8510")
    assert memo["invoiceNumber"] == invoice["number"]
    assert len(await exports.credit_memos("K-8510")) == 1
    assert len(await _writes(exports, "/salesCreditMemos")) == 1


@pytest.mark.parametrize("where", ["not-in-bc", "released-draft"])
async def test_a_credit_note_whose_invoice_never_comes_is_dead_lettered_not_posted(
    exports: Exports, bc_client: BCClient, where: str
) -> None:
    if where == "released-draft":
        # In BC, but only as a draft someone released: "Open" like a posted invoice, and BC
        # refuses its id as the credit memo's invoiceId.
        made = await bc_client.post(
            "salesInvoices",
            {
                "customerNumber": "10000",
                "externalDocumentNumber": "8511",
                "salesInvoiceLines": [
                    {"lineType": "Account", "lineObjectNumber": "3010", "quantity": 1}
                ],
            },
        )
        assert made.status == 201, made.body
        await exports.emulator.control.set_sales_invoice_status(
            "Released", at=exports.emulator.company_ref, external_document_number="8511"
        )
    since = await exports.last_seq()
    event_id = await exports.send(
        INVOICE_CREATED, {"invoice": _credit_note("K-8511", credits="8511")}
    )
    assert await exports.done(event_id) == ["dead_lettered"]
    assert exports.tracker.outcomes[event_id] == ["retried"] * 3 + ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "BC-CREDITED-INVOICE-MISSING"
    assert dead.headers[H.ERROR_CLASS] == "attempts_exhausted"
    assert dead.headers[H.SUBJECT] == "credit note K-8511"
    message = dead.headers[H.ERROR_MESSAGE]
    assert "Credit note K-8511 credits invoice 8511" in message
    assert "only posted applied to the invoice it credits" in message
    assert ("is not in Business Central yet" in message) == (where == "not-in-bc")
    # Never posted unapplied, never even made as a draft.
    assert await exports.credit_memos("K-8511") == []
    creates = [
        (r["status"], r["code"])
        for r in await exports.bc_requests(since)
        if r["method"] == "POST" and r["path"].endswith("/salesCreditMemos")
    ]
    if where == "not-in-bc":
        assert creates == []  # each attempt only looked (one $batch of two GETs)
    else:
        # Each attempt offered the invoice's id; BC refused it as no posted invoice.
        assert creates == [(400, "Application_DialogException")] * 4


async def test_a_credit_note_for_another_customers_invoice_is_a_permanent_error(
    exports: Exports,
) -> None:
    await _post_invoice(exports, "8520")
    other = f.customer("20000", country="DE", currency_code="EUR")
    since = await exports.last_seq()
    note = _credit_note(
        "K-8520",
        _line(-1, 100, f.project("4005", department="100", cust=other)),
        credits="8520",
        cust=other,
    )
    event_id = await exports.send(INVOICE_CREATED, {"invoice": note})
    assert await exports.done(event_id) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "BC-CREDITED-INVOICE-OTHER-CUSTOMER"
    assert dead.headers[H.ERROR_CLASS] == "permanent"
    message = dead.headers[H.ERROR_MESSAGE]
    [invoice] = await exports.invoices("8520")
    for named in ("K-8520", "customer 20000", "8520", invoice["number"], "customer 10000"):
        assert named in message, named
    assert await exports.credit_memos("K-8520") == []
    assert await _writes(exports, "/salesCreditMemos", since) == []


async def test_a_credit_note_for_a_fully_credited_invoice_is_refused(exports: Exports) -> None:
    await _post_invoice(exports, "8530", _line(1, 1000, PORTAL))
    first = await exports.send(
        INVOICE_CREATED,
        {"invoice": _credit_note("K-8530", _line(-1, 1000, PORTAL), credits="8530")},
    )
    assert await exports.done(first) == ["succeeded"]
    [closed] = await exports.invoices("8530")
    assert (closed["status"], closed["creditedAmount"]) == ("Paid", 1250)
    second = await exports.send(
        INVOICE_CREATED, {"invoice": _credit_note("K-8531", _line(-1, 100, PORTAL), credits="8530")}
    )
    assert await exports.done(second) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "BC-CREDITED-INVOICE-CLOSED"
    assert "paid or fully credited" in dead.headers[H.ERROR_MESSAGE]
    assert await exports.credit_memos("K-8531") == []


# ---- exactly once --------------------------------------------------------------------------------


async def test_the_same_credit_note_twice_makes_one_posted_credit_memo(exports: Exports) -> None:
    await _post_invoice(exports, "8540")
    note = _credit_note("K-8540", credits="8540")
    await exports.send(INVOICE_CREATED, {"invoice": note}, id_="ev-k-8540")
    await exports.posted_credit_memo("K-8540")
    since = await exports.last_seq()
    await exports.send(INVOICE_CREATED, {"invoice": note}, id_="ev-k-8540")
    assert await exports.done("ev-k-8540", 2) == ["succeeded", "succeeded"]

    assert len(await exports.credit_memos("K-8540")) == 1
    assert len(await _writes(exports, "/salesCreditMemos")) == 1
    assert len(await _writes(exports, "/Microsoft.NAV.post")) == 2  # the invoice's and the memo's
    # The redelivery found it posted and applied in full (Paid): one request, nothing written.
    assert [r["path"].rsplit("/", 1)[-1] for r in await exports.bc_requests(since)] == ["$batch"]
    [invoice] = await exports.invoices("8540")
    assert invoice["creditedAmount"] == 3000  # credited once


@pytest.mark.parametrize("exports", ["sqlite", "postgresql"], indirect=True)
async def test_two_workers_racing_make_one_credit_memo(exports: Exports) -> None:
    await _post_invoice(exports, "8541")
    await exports.start_worker()
    await exports.emulator.control.add_fault(
        "latency", method="POST", path="/salesCreditMemos$", latency_ms=150
    )
    note = _credit_note("K-8541", credits="8541")
    for _ in range(3):
        await exports.send(INVOICE_CREATED, {"invoice": note}, id_="ev-k-8541")
    assert await exports.done("ev-k-8541", 3, timeout=30) == ["succeeded"] * 3
    assert len(await exports.credit_memos("K-8541")) == 1
    assert len(await _writes(exports, "/salesCreditMemos")) == 1
    posts = [
        p for p in await _writes(exports, "/Microsoft.NAV.post") if "salesCreditMemos" in p["path"]
    ]
    assert len(posts) == 1
    [invoice] = await exports.invoices("8541")
    assert invoice["creditedAmount"] == 3000


@pytest.mark.parametrize("posted_in_bc", [False, True], ids=["before-post", "after-post"])
async def test_crash_around_the_post_resumes_without_a_second_credit_memo(
    exports: Exports, posted_in_bc: bool
) -> None:
    # The connection drops while posting: BC never got the post (the draft is resumed and
    # posted) or it did and only the answer was lost (nothing more is written).
    await _post_invoice(exports, "8542")
    await exports.emulator.control.add_fault(
        "drop", path=r"salesCreditMemos\(.*\)/Microsoft.NAV.post$", count=1, after=posted_in_bc
    )
    event_id = await exports.send(
        INVOICE_CREATED, {"invoice": _credit_note("K-8542", credits="8542")}
    )
    memo = await exports.posted_credit_memo("K-8542")
    assert await exports.done(event_id) == ["succeeded"]
    assert exports.tracker.outcomes[event_id] == ["retried", "succeeded"]

    assert len(await exports.credit_memos("K-8542")) == 1
    assert len(await _writes(exports, "/salesCreditMemos")) == 1, "a second draft was made"
    posts = [
        r
        for r in await exports.bc_requests()
        if r["path"].endswith("/Microsoft.NAV.post") and "salesCreditMemos" in r["path"]
    ]
    if posted_in_bc:
        # Posted and applied in full: Paid, so the resume finds it done without asking BC.
        assert [(p["fault"], p["status"]) for p in posts] == [("drop", None)]
    else:
        assert [(p["fault"], p["status"]) for p in posts] == [("drop", None), (None, 204)]
    [bc_line] = memo["salesCreditMemoLines"]
    assert _dims(bc_line) == {"PROJEKT": "4005", "AVDELNING": "100"}
    [invoice] = await exports.invoices("8542")
    assert invoice["creditedAmount"] == 3000 and memo["invoiceNumber"] == invoice["number"]


# ---- BC requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lines", [1, 10, 50])
async def test_credit_note_requests_do_not_grow_with_lines(exports: Exports, lines: int) -> None:
    number = f"86{lines:02d}"
    await _post_invoice(exports, number, _line(100, 1000, PORTAL))  # also warms the facts cache
    body = [
        _line(-(1 + i % 3), 10.0 + i, [PORTAL, MIGRATION][i % 2], description=f"Rad {i}")
        for i in range(lines)
    ]
    since = await exports.last_seq()
    event_id = await exports.send(
        INVOICE_CREATED, {"invoice": _credit_note(f"K-{number}", *body, credits=number)}
    )
    assert await exports.done(event_id) == ["succeeded"]
    requests = await exports.bc_requests(since)
    calls = [f"{r['method']} {r['path'].rsplit('/', 1)[-1].split('(')[0]}" for r in requests]
    assert len(requests) <= 5, calls
    assert calls == [
        "POST $batch",  # find the credit memo and the credited invoice
        "POST salesCreditMemos",  # the draft with its lines, applied to the invoice
        "POST $batch",  # every line's dimensions
        "POST Microsoft.NAV.post",
        "GET salesCreditMemos",  # read back: posted number, status
    ]
    inner = [
        r
        for r in await exports.emulator.control.requests(since=since)
        if r["batch_parent"] == requests[2]["seq"]
    ]
    assert len(inner) == 2 * lines <= 100
    memo = await exports.posted_credit_memo(f"K-{number}")
    [invoice] = await exports.invoices(number)
    assert memo["invoiceNumber"] == invoice["number"]
    assert len(memo["salesCreditMemoLines"]) == lines
    assert all(len(x["dimensionSetLines"]) == 2 for x in memo["salesCreditMemoLines"])


# ---- approval and the event contract -------------------------------------------------------------


async def test_a_credit_memo_held_for_approval_waits_and_is_posted_once_approved(
    exports: Exports,
) -> None:
    control, at = exports.emulator.control, exports.emulator.company_ref
    await control.set_sales_credit_memo_approval(True, at=at)
    await _post_invoice(exports, "8550")  # the invoice workflow is another one: it posts
    note = _credit_note("K-8550", credits="8550")
    first = await exports.send(INVOICE_CREATED, {"invoice": note})
    assert await exports.done(first) == ["waiting"]
    [draft] = await exports.credit_memos("K-8550")
    [report] = exports.tracker.waiting
    assert (report.object_type, report.code) == ("credit_note", "BC-CREDIT-NOTE-AWAITING-APPROVAL")
    assert "approval workflow for sales credit memos" in report.message
    assert draft["number"] in report.message
    await control.set_sales_credit_memo_status("Released", at=at, credit_memo_id=draft["id"])
    again = await exports.send(INVOICE_CREATED, {"invoice": note})
    assert await exports.done(again) == ["succeeded"]
    memo = await exports.posted_credit_memo("K-8550")
    assert memo["draftNumber"] == draft["number"] and memo["invoiceNumber"] != ""
    assert await exports.dead_count() == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            _credit_note("K-8560", _line(2, 100, PORTAL)),
            "a credit note's total must not be positive",
        ),
        (
            {**_invoice("8561"), "credited_invoice": {"id": "i-1", "number": "1"}},
            "credited_invoice is only for credit notes",
        ),
    ],
    ids=["positive-credit-note", "credited-invoice-on-an-invoice"],
)
async def test_a_contradictory_credit_note_is_an_invalid_event(
    exports: Exports, data: dict[str, Any], expected: str
) -> None:
    since = await exports.last_seq()
    event_id = await exports.send(INVOICE_CREATED, {"invoice": data})
    assert await exports.done(event_id) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "EVENT-INVALID"
    assert expected in dead.headers[H.ERROR_MESSAGE]
    assert "data.invoice" in dead.headers[H.ERROR_MESSAGE]
    assert await exports.bc_requests(since) == []


async def test_an_unapplied_draft_of_the_credit_note_is_not_posted(
    exports: Exports, bc_client: BCClient
) -> None:
    # A draft with the credit note's number is in BC, made by hand without the application:
    # posting it would leave the credit unapplied.
    invoice = await _post_invoice(exports, "8570")
    made = await bc_client.post(
        "salesCreditMemos",
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "K-8570",
            "salesCreditMemoLines": [
                {
                    "lineType": "Account",
                    "lineObjectNumber": "3010",
                    "quantity": 2,
                    "unitPrice": 1200,
                }
            ],
        },
    )
    assert made.status == 201, made.body
    event_id = await exports.send(
        INVOICE_CREATED, {"invoice": _credit_note("K-8570", credits="8570")}
    )
    assert await exports.done(event_id) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "BC-VALIDATION"
    message = dead.headers[H.ERROR_MESSAGE]
    assert made.body["number"] in message and "unapplied" in message and "8570" in message
    [memo] = await exports.credit_memos("K-8570")
    assert memo["documentStatus"] == "Open" and memo["invoiceNumber"] == ""
    assert "creditedAmount" not in (await exports.invoices("8570"))[0]
    assert invoice["status"] == "Open"
