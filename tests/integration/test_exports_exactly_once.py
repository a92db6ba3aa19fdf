"""Exactly once in BC, whatever the delivery: duplicates, racing workers, events out of order,
and a crash between the draft and its posting."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import factories as f
from tests.support.exports import Exports
from tests.support.wait import wait_for

INVOICE_CREATED = "moment.invoice.created"
CUSTOMER_CREATED = "moment.customer.created"


def one_line_invoice(number: str, cust: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    return f.invoice(
        number,
        cust=cust,
        lines=[
            {
                "description": "Consulting",
                "quantity": 3,
                "unit_price": 1000.0,
                "account_number": "3010",
                "vat_code": "25",
                "project": project,
            }
        ],
    )


async def _writes(exports: Exports, suffix: str) -> list[dict[str, Any]]:
    return [
        r
        for r in await exports.bc_requests()
        if r["method"] == "POST" and r["path"].endswith(suffix) and r["status"] in (200, 201, 204)
    ]


async def test_the_same_event_twice_makes_one_posted_invoice(exports: Exports) -> None:
    cust = f.customer("10000")
    invoice = one_line_invoice("8001", cust, f.project("4005", department="100", cust=cust))
    await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-8001")
    await exports.posted("8001")
    await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-8001")
    assert await exports.done("ev-8001", 2) == ["succeeded", "succeeded"]

    assert len(await exports.invoices("8001")) == 1
    assert len(await _writes(exports, "/salesInvoices")) == 1
    assert len(await _writes(exports, "/Microsoft.NAV.post")) == 1


@pytest.mark.parametrize("exports", ["sqlite", "postgresql"], indirect=True)
async def test_two_workers_racing_make_one_invoice_and_one_customer(exports: Exports) -> None:
    await exports.start_worker()
    # Slow writes widen the window in which both workers are between "find" and "create".
    await exports.emulator.control.add_fault(
        "latency", method="POST", path="/(salesInvoices|customers)$", latency_ms=150
    )
    cust = f.customer("50020")
    invoice = one_line_invoice("8002", cust, f.project("4005", department="100", cust=cust))
    for _ in range(2):
        await exports.send(CUSTOMER_CREATED, {"customer": cust}, id_="ev-c-50020")
    for _ in range(3):
        await exports.send(INVOICE_CREATED, {"invoice": invoice}, id_="ev-8002")
    await exports.posted("8002")
    assert await exports.done("ev-8002", 3) == ["succeeded"] * 3
    # The invoice carries a newer snapshot of the customer: a copy of the older customer event
    # handled after the invoice applied that snapshot is superseded (the ledger's rule), never
    # applied over it. Which copies come first is up to the race.
    customer_outcomes = await exports.done("ev-c-50020", 2)
    assert set(customer_outcomes) <= {"succeeded", "superseded"}, customer_outcomes

    assert len(await exports.invoices("8002")) == 1
    assert len(await _writes(exports, "/salesInvoices")) == 1
    assert len(await _writes(exports, "/Microsoft.NAV.post")) == 1
    customers = [c for c in (await exports.company())["customers"] if c["number"] == "50020"]
    assert len(customers) == 1
    assert (customers[0]["genBusPostingGroup"], customers[0]["customerPostingGroup"]) == (
        "INRIKES",
        "KUNDER",
    )


async def test_invoice_before_its_customer_and_project_creates_all_three(
    exports: Exports,
) -> None:
    cust = f.customer("50030", name="Late Customer AB")
    project = f.project("4300", name="Brand new project", department="300", cust=cust)
    await exports.send(INVOICE_CREATED, {"invoice": one_line_invoice("8003", cust, project)})
    posted = await exports.posted("8003")

    customer = await exports.customer("50030")
    assert customer is not None and customer["displayName"] == "Late Customer AB"
    assert (customer["genBusPostingGroup"], customer["customerPostingGroup"]) == (
        "INRIKES",
        "KUNDER",
    )
    value = await exports.dimension_value("PROJEKT", "4300")
    assert value is not None and value["displayName"] == "Brand new project"
    [bc_line] = posted["salesInvoiceLines"]
    dims = {d["code"]: d["valueCode"] for d in bc_line["dimensionSetLines"]}
    assert dims == {"PROJEKT": "4300", "AVDELNING": "300"}
    assert posted["customerNumber"] == "50030"

    # The customer and project events arriving afterwards change nothing and fail nothing.
    late = [
        await exports.send(CUSTOMER_CREATED, {"customer": cust}),
        await exports.send("moment.project.created", {"project": project}),
    ]
    for event_id in late:
        assert await exports.done(event_id) == ["succeeded"]
    assert len([c for c in (await exports.company())["customers"] if c["number"] == "50030"]) == 1


@pytest.mark.parametrize("posted_in_bc", [False, True], ids=["before-post", "after-post"])
async def test_crash_around_the_post_resumes_without_a_second_draft(
    exports: Exports, posted_in_bc: bool
) -> None:
    # The connection drops while posting, so the worker cannot know whether BC posted: the event
    # goes round the retry ladder. Either BC never got the post (the draft is resumed and posted)
    # or it did and only the answer was lost (nothing more is written).
    await exports.emulator.control.add_fault(
        "drop", path="Microsoft.NAV.post$", count=1, after=posted_in_bc
    )
    cust = f.customer("10000")
    invoice = one_line_invoice("8004", cust, f.project("4006", department="200", cust=cust))
    event_id = await exports.send(INVOICE_CREATED, {"invoice": invoice})
    posted = await exports.posted("8004")
    assert await exports.done(event_id) == ["succeeded"]
    assert exports.tracker.outcomes[event_id] == ["retried", "succeeded"]

    assert len(await exports.invoices("8004")) == 1
    assert len(await _writes(exports, "/salesInvoices")) == 1, "a second draft was made"
    posts = [r for r in await exports.bc_requests() if r["path"].endswith("/Microsoft.NAV.post")]
    # The resumed invoice shows "Open" if BC posted it, but a released draft shows "Open" too:
    # the resume asks BC to post and BC answers that it is posted (400), writing nothing.
    assert [(p["fault"], p["status"]) for p in posts] == [
        ("drop", None),
        (None, 400) if posted_in_bc else (None, 204),
    ]
    # The draft's line dimensions were already set: the resume did not set them again.
    assert len([r for r in await exports.bc_requests() if r["path"].endswith("/$batch")]) == 1
    [bc_line] = posted["salesInvoiceLines"]
    assert {d["code"]: d["valueCode"] for d in bc_line["dimensionSetLines"]} == {
        "PROJEKT": "4006",
        "AVDELNING": "200",
    }


async def test_a_burst_of_invoices_for_a_new_customer_and_project(exports: Exports) -> None:
    # Moment invoicing a brand-new customer several times at once: every invoice races to create
    # the same customer and project; each must end up posted, the customer and value made once.
    cust = f.customer("50060", name="Burst AB")
    project = f.project("4800", name="Burst project", department="100", cust=cust)
    numbers = [f"81{i:02d}" for i in range(5)]
    for number in numbers:
        await exports.send(INVOICE_CREATED, {"invoice": one_line_invoice(number, cust, project)})
    for number in numbers:
        await exports.posted(number)
    await exports.idle()

    state = await exports.company()
    assert [c["number"] for c in state["customers"]].count("50060") == 1
    projekt = next(d for d in state["dimensions"] if d["code"] == "PROJEKT")
    assert [v["code"] for v in projekt["values"]].count("4800") == 1
    assert len(await _writes(exports, "/salesInvoices")) == len(numbers)
    assert await exports.dead_count() == 0


async def test_customer_left_without_posting_groups_is_repaired_and_the_invoice_posted(
    exports: Exports,
) -> None:
    # A customer export that stopped between creating the customer and setting its posting
    # groups (a crash) leaves a customer BC cannot post to; the next invoice repairs it.
    await exports.seed_customer("50080", posting_groups=False)
    cust = f.customer("50080")
    invoice = one_line_invoice("8200", cust, f.project("4005", department="100", cust=cust))
    event_id = await exports.send(INVOICE_CREATED, {"invoice": invoice})
    assert await exports.done(event_id) == ["succeeded"]

    customer = await exports.customer("50080")
    assert customer is not None
    assert (customer["genBusPostingGroup"], customer["customerPostingGroup"]) == (
        "INRIKES",
        "KUNDER",
    )
    [posted] = await exports.invoices("8200")
    assert posted["status"] == "Open"
    assert len(await _writes(exports, "/Microsoft.NAV.post")) == 1


async def test_a_customer_made_concurrently_without_posting_groups_is_repaired(
    exports: Exports,
) -> None:
    # BC refuses the draft (no such customer); before the worker looks the customer up, another
    # export creates it but has not set its posting groups yet. The next create is refused for
    # the groups: they are set from the snapshot, and the invoice is posted (not dead-lettered
    # as BC's validation text, as a chaos soak once saw).
    await exports.emulator.control.add_fault(
        "latency", method="GET", path="/customers$", latency_ms=1500, count=1
    )
    cust = f.customer("50095")
    invoice = one_line_invoice("8210", cust, f.project("4005", department="100", cust=cust))
    event_id = await exports.send(INVOICE_CREATED, {"invoice": invoice})

    async def refused() -> bool:
        return bool(
            [r for r in await exports.bc_requests() if r["path"].endswith("/salesInvoices")]
        )

    await wait_for(refused, 10, interval=0.05)
    await exports.seed_customer("50095", posting_groups=False)  # while the lookup is slow
    assert await exports.done(event_id) == ["succeeded"]
    creates = [
        r["status"]
        for r in await exports.bc_requests()
        if r["method"] == "POST" and r["path"].endswith("/salesInvoices")
    ]
    assert creates == [400, 400, 201]
    customer = await exports.customer("50095")
    assert customer is not None
    assert (customer["genBusPostingGroup"], customer["customerPostingGroup"]) == (
        "INRIKES",
        "KUNDER",
    )
    assert len(await exports.invoices("8210")) == 1
