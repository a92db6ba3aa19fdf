"""Payment import end to end: Moment invoices exported through the real broker and consumer to
the BC emulator, paid there (payments, credit memos, reversals), read back by the payments
part of the poll role through the real BC client, and published with confirms on a real
RabbitMQ for Moment; the store in real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aio_pika
import pytest

from tests.support import factories as f
from tests.support.amqp import drain
from tests.support.exports import ORG, Exports, Worker
from tests.support.wait import wait_for
from worker.events.handlers import FailureReport, Observer
from worker.events.models import ExportedData
from worker.messaging.publisher import Publisher
from worker.metrics import PAYMENTS_POLLER_LAG
from worker.sync.expenses import PollResult
from worker.sync.payments import (
    PAID_EVENT,
    UPDATED_EVENT,
    PaymentPoller,
    PaymentPollResult,
    PaymentState,
    event_id,
)

INVOICE_CREATED = "moment.invoice.created"
TOTAL = 3750.0  # 3 x 1,000 + 25 % VAT
IDS = re.compile(r"id eq ([0-9a-f-]{36})")


class Reports(Observer):
    def __init__(self) -> None:
        self.failures: list[FailureReport] = []

    async def on_failure(self, report: FailureReport) -> None:
        self.failures.append(report)


@dataclass
class Payments:
    """One test's world: the export harness, Moment's queue of payment events, pollers."""

    exports: Exports
    queue: str
    reports: Reports = field(default_factory=Reports)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def save_config(self, **overrides: Any) -> None:
        await self.exports.save_config(
            **{"import_payments": True, "payments_from_date": "2026-01-01", **overrides}
        )

    def poller(self, worker: Worker | None = None, **options: Any) -> PaymentPoller:
        """The payments part of the poll role in a worker process (its store, hub, broker)."""
        runtime = (worker or self.exports.workers[0]).runtime
        return PaymentPoller(
            settings=runtime.settings,
            store=runtime.store,
            ctx=runtime.sync_context(),
            sink=options.pop("sink", None) or runtime.publisher,
            leases=runtime.leases,
            observers=[self.reports],
            **options,
        )

    async def export(self, number: str) -> dict[str, Any]:
        """Send a Moment invoice through the worker; the posted BC invoice."""
        cust = f.customer("10000")
        invoice = f.invoice(
            number,
            cust=cust,
            lines=[
                {
                    "description": "Consulting",
                    "quantity": 3,
                    "unit_price": 1000.0,
                    "account_number": "3010",
                    "vat_code": "25",
                    "project": f.project("4005", department="100", cust=cust),
                }
            ],
        )
        event = await self.exports.send(INVOICE_CREATED, {"invoice": invoice})
        assert await self.exports.done(event) == ["succeeded"]
        return await self.exports.posted(number)

    async def pay(self, invoice: dict[str, Any], amount: float, kind: str = "payment") -> str:
        """Apply a payment (or credit memo) in BC; the applied entry's id."""
        answer = await self.exports.emulator.control.pay_invoice(
            invoice["id"], amount, kind=kind, at=self.exports.emulator.company_ref
        )
        return str(answer["application"]["id"])

    async def reverse(self, application: str) -> None:
        await self.exports.emulator.control.reverse_payment(
            application, at=self.exports.emulator.company_ref
        )

    async def bc_invoice(self, invoice_id: str) -> dict[str, Any]:
        rows = (await self.exports.company())["salesInvoices"]
        return next(r for r in rows if r["id"] == invoice_id)

    async def received(self) -> list[dict[str, Any]]:
        """Every payment event Moment has been sent so far (duplicates included)."""
        self.seen.extend(g.json for g in await drain(self.exports.settings, self.queue))
        return list(self.seen)

    async def distinct(self) -> dict[str, dict[str, Any]]:
        """What a consumer that dedupes by event id keeps."""
        return {e["id"]: e for e in await self.received()}


@pytest.fixture
async def payments(exports: Exports) -> AsyncIterator[Payments]:
    settings = exports.settings
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    name = settings.queue("moment-payments")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=False, auto_delete=False)
        for key in (PAID_EVENT, UPDATED_EVENT):
            await queue.bind(settings.exchange, key)
    world = Payments(exports, name)
    await world.save_config()
    try:
        yield world
    finally:
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)


def only(results: list[PollResult]) -> PaymentPollResult:
    [result] = results
    assert isinstance(result, PaymentPollResult)
    return result


@pytest.mark.parametrize("exports", ["sqlite", "postgresql"], indirect=True)
async def test_partly_paid_paid_and_reversed_each_reach_moment_once(payments: Payments) -> None:
    bc = await payments.export("9101")
    poller = payments.poller()
    first = only(await poller.run_round())
    assert (first.status, first.published, first.checked) == ("ok", 0, 1)
    assert await payments.received() == []

    # Partly paid: only the re-read sees it (nothing on the row changes).
    await payments.pay(bc, 1000)
    partly = only(await poller.run_round())
    assert (partly.paid, partly.updated) == (0, 1)
    [updated] = await payments.received()
    assert (updated["type"], updated["organizationid"]) == (UPDATED_EVENT, ORG)
    assert updated["id"] == partly.event_ids[0] == event_id(ORG, bc["id"], 1, "Open", Decimal(2750))
    seen_at = updated["data"].pop("seen_at")
    assert datetime.fromisoformat(seen_at.replace("Z", "+00:00")) <= datetime.now(UTC)
    assert updated["data"] == {
        "moment_id": "i-9101",
        "moment_number": "9101",
        "bc_id": bc["id"],
        "bc_number": bc["number"],
        "amount": TOTAL,
        "currency_code": "SEK",
        "remaining_amount": 2750.0,
        "previous_remaining_amount": TOTAL,
        "paid_amount": 1000.0,
        "status": "Open",
        "previous_status": "Open",
    }
    assert only(await poller.run_round()).published == 0  # nothing twice

    # Paid: the status change.
    rest = await payments.pay(bc, 2750)
    paid_round = only(await poller.run_round())
    assert (paid_round.paid, paid_round.updated) == (1, 0)
    [paid] = (await payments.received())[1:]
    in_bc = await payments.bc_invoice(bc["id"])
    assert paid["type"] == PAID_EVENT
    assert {k: paid["data"][k] for k in ("moment_id", "bc_number", "amount", "currency_code")} == {
        "moment_id": "i-9101",
        "bc_number": bc["number"],
        "amount": TOTAL,
        "currency_code": "SEK",
    }
    assert paid["data"]["paid_date"] == in_bc["lastModifiedDateTime"][:10]
    assert paid["data"]["paid_date_source"] == "bc_last_modified"
    assert only(await poller.run_round()).published == 0

    # The last payment reversed: Open again, found by lastModifiedDateTime (a paid invoice is
    # not among the open ones re-read).
    await payments.reverse(rest)
    reopened = only(await poller.run_round())
    assert (reopened.paid, reopened.updated) == (0, 1)
    [back] = (await payments.received())[2:]
    assert back["type"] == UPDATED_EVENT
    assert {
        k: back["data"][k]
        for k in ("status", "previous_status", "remaining_amount", "previous_remaining_amount")
    } == {
        "status": "Open",
        "previous_status": "Paid",
        "remaining_amount": 2750.0,
        "previous_remaining_amount": 0.0,
    }
    assert back["data"]["paid_amount"] == 1000.0
    assert only(await poller.run_round()).published == 0
    events = await payments.received()
    assert len(events) == len({e["id"] for e in events}) == 3
    assert PAYMENTS_POLLER_LAG.labels(ORG)._value.get() >= 0
    outcomes = {o.object_type: o for o in await payments.exports.runtime.store.outcomes(ORG)}
    assert outcomes["payment"].last_success_at is not None


async def test_a_credit_memo_applied_counts_as_payment(payments: Payments) -> None:
    bc = await payments.export("9102")
    poller = payments.poller()
    await payments.pay(bc, 750, kind="credit_memo")
    assert only(await poller.run_round()).updated == 1
    await payments.pay(bc, 3000, kind="credit_memo")
    assert only(await poller.run_round()).paid == 1
    updated, paid = await payments.received()
    assert (updated["type"], updated["data"]["remaining_amount"]) == (UPDATED_EVENT, 3000.0)
    assert (paid["type"], paid["data"]["amount"]) == (PAID_EVENT, TOTAL)


async def test_an_invoice_posted_by_hand_is_not_reported(payments: Payments) -> None:
    """A posted invoice bc-sync did not export, even with a Moment-looking external document
    number, is never reported: nothing says which Moment invoice it would be."""
    emulator = payments.exports.emulator
    ours = await payments.export("9103")
    theirs = await emulator.control.add_sales_invoice(
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "9104",
            "salesInvoiceLines": [
                {"lineType": "Account", "lineObjectNumber": "3010", "quantity": 1, "unitPrice": 80}
            ],
        },
        at=emulator.company_ref,
    )
    poller = payments.poller()
    only(await poller.run_round())
    await payments.pay(ours, TOTAL)
    await emulator.control.pay_invoice(theirs["id"], 100, at=emulator.company_ref)
    result = only(await poller.run_round())
    assert (result.paid, result.updated) == (1, 0)
    assert result.not_ours >= 1  # read (its status changed), and left alone
    [event] = await payments.received()
    assert event["data"]["bc_id"] == ours["id"]


async def test_a_restart_between_publish_and_bookkeeping_sends_no_new_event(
    payments: Payments,
) -> None:
    bc = await payments.export("9105")
    only(await payments.poller().run_round())
    await payments.pay(bc, 500)

    async def crash(*_a: Any, **_k: Any) -> Any:
        raise ConnectionError("worker died")

    # Died after the broker confirmed, before the store recorded it: the next process sends the
    # same event (same id, same data), which Moment drops as a duplicate.
    dying = payments.poller()
    dying.state.record = crash  # type: ignore[method-assign]
    crashed = only(await dying.run_round())
    assert (crashed.status, crashed.reason) == ("failed", "INTERNAL-ERROR")
    restarted = payments.poller()
    assert only(await restarted.run_round()).updated == 1
    first, again = await payments.received()
    assert first["id"] == again["id"] and first["data"]["remaining_amount"] == 3250.0
    assert {k: v for k, v in first["data"].items() if k != "seen_at"} == {
        k: v for k, v in again["data"].items() if k != "seen_at"
    }

    # Died after the store recorded it, before the watermark: nothing is sent again.
    await payments.pay(bc, TOTAL - 500)
    dying = payments.poller()
    dying.state.save_watermark = crash  # type: ignore[method-assign]
    assert only(await dying.run_round()).status == "failed"
    assert len(await payments.received()) == 3
    after = only(await payments.poller().run_round())
    assert (after.status, after.published) == ("ok", 0)
    events = await payments.distinct()
    assert len(await payments.received()) == 3 and len(events) == 2
    assert sorted(e["type"] for e in events.values()) == [PAID_EVENT, UPDATED_EVENT]


@pytest.mark.parametrize("exports", ["postgresql"], indirect=True)
async def test_two_pollers_at_once_send_one_set_of_events(payments: Payments) -> None:
    exports = payments.exports
    invoices = [await payments.export(n) for n in ("9106", "9107")]
    other = await exports.start_worker()
    publisher = Publisher(exports.runtime.connection, exports.settings.exchange)
    meanwhile: list[PollResult] = []

    class OtherReplicaPollsMeanwhile:
        """While the first poller publishes (holding the lease), the second one polls."""

        async def events(self, items: Iterable[tuple[str, bytes, str]]) -> int:
            if not meanwhile:
                meanwhile.extend(await b.run_round())
            return await publisher.events(items)

    a = payments.poller(sink=OtherReplicaPollsMeanwhile())
    b = payments.poller(other)
    await payments.pay(invoices[0], 100)
    assert only(await a.run_round()).updated == 1
    assert [(r.status, r.reason) for r in meanwhile] == [("skipped", "polled_elsewhere")]

    # Both at once, with BC slow enough for the rounds to overlap.
    await payments.pay(invoices[0], TOTAL - 100)
    await payments.pay(invoices[1], 1)
    await exports.emulator.control.set_limits(latency_ms=30)
    results = await asyncio.gather(a.run_round(), b.run_round(), a.run_round(), b.run_round())
    assert sum(r.published for rs in results for r in rs) == 2
    events = await payments.received()
    assert len(events) == len({e["id"] for e in events}) == 3


async def test_the_from_date_bounds_the_invoices_followed(payments: Payments) -> None:
    """Invoices posted before the from date are not reported; an earlier from date reports
    what changed since Moment was last told."""
    await payments.save_config(payments_from_date="2026-12-01")
    bc = await payments.export("9108")  # posted on its invoice date, 2026-11-20
    poller = payments.poller()
    await payments.pay(bc, 1000)
    assert only(await poller.run_round()).published == 0
    assert only(await poller.run_round()).published == 0
    await payments.save_config(payments_from_date="2026-11-01")
    assert only(await poller.run_round()).updated == 1
    [event] = await payments.received()
    assert event["data"]["previous_remaining_amount"] == TOTAL


async def test_rejected_credentials_pause_until_the_config_is_saved(payments: Payments) -> None:
    emulator = payments.exports.emulator
    bc = await payments.export("9109")
    poller = payments.poller()
    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=False)
    paused = only(await poller.run_round())
    assert (paused.status, paused.reason) == ("paused", "BC-CREDENTIALS-REJECTED")
    [report] = payments.reports.failures
    assert (report.org, report.object_type, report.code) == (ORG, "payment", paused.reason)
    assert report.final and report.notify_now
    assert emulator.client_secret not in report.message

    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=True)
    await payments.pay(bc, TOTAL)
    await emulator.control.clear_requests()
    assert only(await poller.run_round()).status == "paused"
    assert await emulator.control.requests(path="salesInvoices") == []  # not polled meanwhile
    assert len(payments.reports.failures) == 1  # told once

    await payments.save_config()  # the admin saves the integration again
    resumed = only(await poller.run_round())
    assert (resumed.status, resumed.paid) == ("ok", 1)


async def test_the_payments_part_runs_on_its_interval_until_stopped(payments: Payments) -> None:
    bc = await payments.export("9110")
    poller = payments.poller(interval_s=0.2)
    await poller.start()
    try:
        await payments.pay(bc, 10)
        await wait_for(lambda: _count(payments, 1), timeout=15)
        await payments.pay(bc, TOTAL - 10)
        await wait_for(lambda: _count(payments, 2), timeout=15)
    finally:
        await poller.stop()
    events = await payments.received()
    assert [e["type"] for e in events] == [UPDATED_EVENT, PAID_EVENT]


async def _count(payments: Payments, n: int) -> bool:
    return len(await payments.received()) >= n


async def test_a_thousand_open_invoices_within_the_bc_budget(payments: Payments) -> None:
    """Partial payments are found by re-reading the open invoices by id, 20 a request (BC's
    filter node limit), oldest-checked first. Per round for 1,000 open invoices: 1 read of the
    changes + 50 re-reads = 51 BC requests; hourly (BC_SYNC_PAYMENTS_INTERVAL_S = 3600) that is
    24 x 51 = 1,224 a day per organization, against BC's 6,000 per 5 minutes."""
    emulator = payments.exports.emulator
    state = PaymentState(payments.exports.runtime.store)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    invoices: list[dict[str, Any]] = []
    for n in range(1000):
        posted = await emulator.control.add_sales_invoice(
            {
                "customerNumber": "10000",
                "externalDocumentNumber": f"{20000 + n}",
                "postingDate": "2026-10-01",
                "salesInvoiceLines": [
                    {
                        "lineType": "Account",
                        "lineObjectNumber": "3010",
                        "quantity": 1,
                        "unitPrice": 100,
                    }
                ],
            },
            at=emulator.company_ref,
            last_modified=(start + timedelta(hours=n)).isoformat(),
        )
        # What the invoice export records when it succeeds.
        await state.exported(
            ORG,
            ExportedData(
                object_type="invoice",
                moment_id=f"i-{20000 + n}",
                moment_number=f"{20000 + n}",
                bc_id=posted["id"],
                bc_number=posted["number"],
                status="Open",
                total_including_tax=posted["totalAmountIncludingTax"],
                currency_code="SEK",
            ),
        )
        invoices.append(posted)
    poller = payments.poller()
    first = only(await poller.run_round())  # no watermark yet: every open invoice, one page
    assert (first.status, first.checked, first.published, first.requests) == ("ok", 1000, 0, 1)

    for inv in invoices[100:103]:
        await emulator.control.pay_invoice(inv["id"], 50, at=emulator.company_ref)
    await emulator.control.clear_requests()
    second = only(await poller.run_round())
    reads = await emulator.control.requests(path="salesInvoices", method="GET")
    assert second.requests == len(reads) == 51
    assert (second.updated, second.checked) == (3, 1000)
    id_reads = [IDS.findall(str(r["query"])) for r in reads if "id eq" in str(r["query"])]
    assert len(id_reads) == 50 and max(len(ids) for ids in id_reads) == 20
    assert {e["data"]["moment_number"] for e in await payments.received()} == {
        "20100",
        "20101",
        "20102",
    }

    # A smaller budget per round: the longest unchecked go first, so every invoice is read
    # again before any is read twice.
    small = payments.poller(checks_per_round=300)
    read_in: list[set[str]] = []
    for _ in range(4):
        await emulator.control.clear_requests()
        assert only(await small.run_round()).status == "ok"
        reads = await emulator.control.requests(path="salesInvoices", method="GET")
        read_in.append({i for r in reads for i in IDS.findall(str(r["query"]))})
    assert [len(ids) for ids in read_in] == [300, 300, 300, 300]
    assert not (read_in[0] & read_in[1]) and not (read_in[1] & read_in[2])
    assert not (read_in[0] & read_in[2])
    assert len(read_in[0] | read_in[1] | read_in[2] | read_in[3]) == 1000 - 1  # newest: changes
