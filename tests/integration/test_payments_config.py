"""The payment import from the dialog's side: *Import payments* and its *From date* saved
through the admin API (validated, verified against BC), the poll role of a real worker process
sending ``bc.invoice.paid``, and the ``payments`` section of the status route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.amqp import drop_topology
from tests.support.api import call
from tests.support.factories import dialog
from tests.support.net import free_port
from tests.support.roles import running
from tests.support.settings import AUTH, FAST_VERIFY, emulator_settings
from tests.support.wait import wait_for
from worker.app import bc_hub
from worker.config.model import parse_config
from worker.config.settings import Settings
from worker.setup.verify import BcUnreachable, verify

ORG = "org-payments"
PATH = f"/v1/organizations/{ORG}/integrations/business-central"


@pytest.fixture
async def app_settings(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Settings]:
    s = emulator_settings(
        tmp_path, emulator, amqp_url=amqp_url, http_port=free_port(), payments_interval_s=0.3
    )
    yield s
    await drop_topology(s)


@pytest.fixture
async def worker(app_settings: Settings) -> AsyncIterator[str]:
    async with running(app_settings, ["consume", "poll", "api"]):
        yield f"http://127.0.0.1:{app_settings.http_port}"


def payments_on(**over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "import_expenses": False,
        "expenses_from_date": None,
        "expense_activity": None,
        "expenses_billable": None,
        "import_payments": True,
        "payments_from_date": "2026-01-01",
    }
    return dialog(**{**values, **over})


async def test_saved_in_the_dialog_then_paid_invoices_reach_moment(
    worker: str, app_settings: Settings, emulator: EmulatorHandle
) -> None:
    status, answer = await call("PUT", worker + PATH, json=payments_on(payments_from_date=None))
    assert status == 401  # the token first
    status, answer = await call(
        "PUT", worker + PATH, json=payments_on(payments_from_date=None), headers=AUTH
    )
    assert (status, answer["errors"]) == (
        422,
        [
            {
                "field": "payments_from_date",
                "code": "required",
                "message": "From date for payments is required when Import payments is on: "
                "payments are imported for the invoices posted in Business Central on or after "
                "it.",
            }
        ],
    )
    status, answer = await call(
        "PUT", worker + PATH, json=payments_on(payments_from_date="1.1.2026"), headers=AUTH
    )
    assert (status, answer["errors"][0]["field"]) == (422, "payments_from_date")
    assert answer["errors"][0]["message"] == (
        "From date for payments must be a date such as 2026-01-01."
    )

    await emulator.control.clear_requests()
    status, answer = await call("PUT", worker + PATH, json=payments_on(), headers=AUTH)
    assert (status, answer) == (201, {"status": "Created"})
    probes = await emulator.control.requests(path="salesInvoices", method="GET")
    assert ["$top=1" in str(r["query"]) for r in probes] == [True]  # verified on save
    status, stored = await call("GET", worker + PATH, headers=AUTH)
    assert (stored["import_payments"], stored["payments_from_date"]) == (True, "2026-01-01")

    connection = await aio_pika.connect(app_settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        moment = await channel.declare_queue(exclusive=True)
        await moment.bind(app_settings.exchange, "bc.invoice.#")
        cust = f.customer("10000")
        invoice = f.invoice("9301", cust=cust)
        exchange = await channel.get_exchange(app_settings.exchange)
        await exchange.publish(
            aio_pika.Message(f.body("moment.invoice.created", {"invoice": invoice}, org=ORG)),
            routing_key="moment.invoice.created",
        )
        exported = await _next_of(moment, "bc.invoice.exported")
        await emulator.control.pay_invoice(
            exported["data"]["bc_id"],
            exported["data"]["total_including_tax"],
            at=emulator.company_ref,
        )
        paid = await _next_of(moment, "bc.invoice.paid")
    assert (paid["organizationid"], paid["data"]["moment_id"]) == (ORG, "i-9301")
    assert paid["data"]["bc_number"] == exported["data"]["bc_number"]
    assert paid["data"]["amount"] == exported["data"]["total_including_tax"]

    report: dict[str, Any] = {}
    section: dict[str, Any] = {}

    async def paid_and_polled() -> bool:
        nonlocal report, section
        _, report = await call("GET", worker + PATH + "/status", headers=AUTH)
        section = report["payments"]
        return bool(section.get("invoices", {}).get("paid") == 1 and section["polled"])

    await wait_for(paid_and_polled, 10, 0.1)
    assert section["paused"] is False and section["last_error_code"] is None
    assert section["last_success_at"] and section["last_poll_at"]
    assert section["invoices"] == {"open": 0, "paid": 1}
    assert emulator.client_secret not in json.dumps(report)


async def _next_of(queue: aio_pika.abc.AbstractQueue, type_: str) -> dict[str, Any]:
    async def next_of_type() -> dict[str, Any] | None:
        while message := await queue.get(fail=False, no_ack=True):
            event: dict[str, Any] = json.loads(message.body)
            if event["type"] == type_:
                return event
        return None

    found: dict[str, Any] = await wait_for(next_of_type, 20)
    return found


async def test_verify_reads_sales_invoices_only_when_payments_are_on(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """Saving with Import payments on checks that the app can read sales invoices; when BC
    fails that read, nothing is saved (and the same failure does not block a save without
    payments)."""
    settings = emulator_settings(tmp_path, emulator)
    await emulator.control.add_fault("status", status=503, path="/salesInvoices$", method="GET")
    async with bc_hub(settings, options=FAST_VERIFY) as hub:
        with pytest.raises(BcUnreachable):
            await verify(parse_config(payments_on()), hub)
        facts = await verify(parse_config(payments_on(import_payments=False)), hub)
    assert facts.name == emulator.company_name
