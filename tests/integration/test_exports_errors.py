"""Failures end to end: each permanent error is dead-lettered at once with its code and a
message naming what is missing; throttling and outages pass by themselves within BC's limits;
switched-off exports are acked, counted and never touch BC."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.support import factories as f
from tests.support.amqp import depth
from tests.support.exports import ORG, Exports
from tests.support.wait import wait_for
from worker.messaging import headers as H

INVOICE_CREATED = "moment.invoice.created"


def _line(project: dict[str, Any] | None, account: str = "3010") -> dict[str, Any]:
    return {
        "description": "Consulting",
        "quantity": 1,
        "unit_price": 1000.0,
        "account_number": account,
        "vat_code": "25",
        "project": project,
    }


def _invoice(
    number: str, *, cust: str = "10000", project: str = "4005", **kw: Any
) -> dict[str, Any]:
    c = f.customer(cust)
    p = f.project(project, department=kw.pop("department", "100"), cust=c)
    return {"invoice": f.invoice(number, cust=c, lines=[_line(p, kw.pop("account", "3010"))])}


@dataclass
class Case:
    code: str
    type_: str
    data: dict[str, Any]
    names: tuple[str, ...]  # what the message must name
    config: dict[str, Any] = field(default_factory=dict)


CASES = {
    "posting group": Case(
        "BC-POSTING-GROUP-MISSING",
        "moment.customer.created",
        {"customer": f.customer("50040", country="NO")},
        ("KUNDER-XX", "abroad", "CRONUS Sverige AB"),
        config={
            "customer_posting_groups": {
                "domestic": {
                    "gen_bus_posting_group": "INRIKES",
                    "customer_posting_group": "KUNDER",
                },
                "abroad": {"gen_bus_posting_group": "EU", "customer_posting_group": "KUNDER-XX"},
            }
        },
    ),
    "dimension": Case(
        "BC-DIMENSION-MISSING",
        "moment.project.created",
        {"project": f.project("4401")},
        ("PROJEKTX", "CRONUS Sverige AB"),
        config={"project_dimension": "PROJEKTX"},
    ),
    "project value, export off": Case(
        "BC-DIMENSION-VALUE-MISSING",
        INVOICE_CREATED,
        _invoice("6001", project="4400"),
        ("PROJEKT '4400'", "project export"),
        config={"export_projects": False},
    ),
    "department value": Case(
        "BC-DIMENSION-VALUE-MISSING",
        INVOICE_CREATED,
        _invoice("6002", department="999"),
        ("AVDELNING '999'",),
    ),
    "customer, export off": Case(
        "BC-CUSTOMER-MISSING",
        INVOICE_CREATED,
        _invoice("6003", cust="50050"),
        ("50050", "customer export"),
        config={"export_customers": False},
    ),
    "account": Case(
        "BC-ACCOUNT-MISSING",
        INVOICE_CREATED,
        _invoice("6004", account="9999"),
        ("9999", "6004"),
    ),
    "account, new customer": Case(
        "BC-ACCOUNT-MISSING",
        INVOICE_CREATED,
        _invoice("6007", cust="50071", account="9999"),
        ("9999", "6007"),
    ),
    "customer without posting groups, export off": Case(
        "BC-POSTING-GROUP-MISSING",
        INVOICE_CREATED,
        _invoice("6008", cust="50072"),
        ("50072", "6008", "customer export"),
        config={"export_customers": False},
    ),
    "blocked account": Case(
        "BC-VALIDATION",
        INVOICE_CREATED,
        _invoice("6005", account="3999"),
        ("invoice 6005", "3999"),
    ),
    "no department in Moment": Case(
        "BC-DEPARTMENT-MISSING",
        INVOICE_CREATED,
        _invoice("6006", department=None),
        ("4005", "department"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
async def test_permanent_error_is_dead_lettered_with_its_code(exports: Exports, case: Case) -> None:
    if case.config:
        await exports.save_config(**case.config)
    await exports.seed_customer("50072", posting_groups=False)
    await exports.send(case.type_, case.data, id_="ev-bad")
    assert await exports.done("ev-bad") == ["dead_lettered"]
    [dead] = await exports.dead(1)
    message = dead.headers[H.ERROR_MESSAGE]
    assert dead.headers[H.ERROR_CODE] == case.code, message
    assert dead.headers[H.ERROR_CLASS] == "permanent"
    assert dead.headers[H.ATTEMPTS] == 1  # at once, not through the ladder
    assert dead.headers[H.EVENT_ID] == "ev-bad" and dead.headers[H.ORG] == ORG
    for name in case.names:
        assert name in message, f"{name!r} not in {message!r}"
    assert "demo-secret" not in str(dead.headers)
    # Recorded for the status endpoint (the status observer runs before the test's tracker).
    outcomes = await exports.runtime.store.outcomes(ORG)
    assert [o.last_failure_code for o in outcomes if o.last_failure_code] == [case.code]


async def test_throttling_and_outages_pass_within_five_requests_in_flight(
    exports: Exports,
) -> None:
    control = exports.emulator.control
    # BC's API and pages storm; Entra stays calm (its own outages are the client tests' job).
    bc = r"/(api/v2\.0|ODataV4)/"
    await control.add_fault("status", path=bc, status=429, retry_after=0.1, probability=0.2, seed=7)
    await control.add_fault("status", path=bc, status=503, probability=0.2, seed=8)
    # Slow answers, so that the events' requests overlap and the limit is really tested.
    await control.add_fault("latency", path=bc, latency_ms=40)
    numbers = [f"5100{i}" for i in range(6)]
    for n in numbers:
        await exports.send("moment.customer.created", {"customer": f.customer(n)})
    cust = f.customer("51100")
    project = f.project("4500", department="200", cust=cust)
    await exports.send(
        INVOICE_CREATED,
        {"invoice": f.invoice("6100", cust=cust, lines=[_line(project), _line(project)])},
    )
    await exports.posted("6100", timeout=30)

    async def all_customers() -> bool:
        for n in numbers:
            c = await exports.customer(n)
            if c is None or c["genBusPostingGroup"] != "INRIKES":
                return False
        return True

    await wait_for(all_customers, 30)
    await exports.idle()
    assert await depth(exports.settings, exports.settings.queue("dead")) == 0
    stats = await control.subject_stats(exports.emulator.tenant_id, exports.emulator.client_id)
    assert stats is not None
    assert stats["max_in_flight"] <= 5
    faulted = [r for r in await exports.bc_requests() if r["fault"]]
    assert len(faulted) >= 5, "the storm did not happen"


def _skipped(type_: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "bcsync_events_skipped_total", {"type": type_, "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("toggle", "type_", "data"),
    [
        ("export_customers", "moment.customer.updated", {"customer": f.customer("52001")}),
        ("export_projects", "moment.project.updated", {"project": f.project("4600")}),
        ("export_invoices", INVOICE_CREATED, _invoice("6200")),
    ],
    ids=["customers", "projects", "invoices"],
)
async def test_switched_off_export_is_acked_counted_and_writes_nothing(
    exports: Exports, toggle: str, type_: str, data: dict[str, Any]
) -> None:
    await exports.save_config(**{toggle: False})
    before = _skipped(type_, "export_off")
    before_unconfigured = _skipped(type_, "not_configured")
    await exports.send(type_, data)
    await exports.send(type_, data, org="org-without-config")
    await wait_for(lambda: _skipped(type_, "export_off") == before + 1)
    await wait_for(lambda: _skipped(type_, "not_configured") == before_unconfigured + 1)
    await exports.idle()
    for queue in ("exports", "dead"):
        assert await depth(exports.settings, exports.settings.queue(queue)) == 0
    assert await exports.bc_requests() == []


async def test_rejected_credentials_go_round_the_ladder_then_to_the_dead_letters(
    exports: Exports,
) -> None:
    await exports.save_config(client_secret="not-the-secret-1234")
    event_id = await exports.send("moment.customer.created", {"customer": f.customer("52100")})
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "BC-CREDENTIALS-REJECTED"
    assert dead.headers[H.ERROR_CLASS] == "attempts_exhausted"
    assert dead.headers[H.ATTEMPTS] == exports.settings.attempts
    assert "secret" in dead.headers[H.ERROR_MESSAGE].lower()
    assert "not-the-secret-1234" not in str(dead.headers)
    assert await exports.done(event_id) == ["dead_lettered"]
    assert await exports.customer("52100") is None
