"""Expense import end to end: the BC emulator (seeded with posted and draft purchase invoices)
→ the real BC client → the poller → confirmed publishes on a real RabbitMQ → what Moment reads,
with the poll state in real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import text as sa_text

from tests.emulator.fixtures import EmulatorHandle
from tests.support.amqp import drain
from tests.support.db import KEY
from tests.support.settings import FAST_POLL, emulator_settings
from tests.support.wait import wait_for
from worker.app import bc_hub
from worker.bc import BcHub
from worker.config.crypto import SecretBox
from worker.config.model import parse_config
from worker.config.settings import Settings
from worker.events.handlers import FailureReport, Observer
from worker.messaging.publisher import Publisher
from worker.metrics import EXPENSES_PUBLISHED, POLLER_LAG
from worker.store import ConfigCache, Leases, Store
from worker.sync.context import SyncContext
from worker.sync.expenses import (
    EVENT_TYPE,
    WITHDRAWN_TYPE,
    ExpenseState,
    PollResult,
    event_id,
    withdrawn_event_id,
)
from worker.sync.poller import ExpensePoller

ORG = "org-expenses"
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
# Seeded: 108001 line 1 (4005), 108002 (4006), 108003 both lines (4005, 4006); 108001's second
# line has no project and P-INV100001 is a draft.
SEEDED = {
    ("108001", "Kontorsmaterial projekt"),
    ("108002", "Serverhyra februari"),
    ("108003", "Licenser"),
    ("108003", "Resa till kund"),
}


class Reports(Observer):
    def __init__(self) -> None:
        self.failures: list[FailureReport] = []

    async def on_failure(self, report: FailureReport) -> None:
        self.failures.append(report)


@dataclass
class Expenses:
    """The world of one test: settings, the emulator, stores, pollers, and Moment's queue."""

    settings: Settings
    emulator: EmulatorHandle
    db_url: str
    connection: AbstractRobustConnection
    queue: str
    reports: Reports = field(default_factory=Reports)
    stores: list[Store] = field(default_factory=list)
    hubs: list[BcHub] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def store(self) -> Store:
        """A store handle of its own (another process, as far as the database can tell)."""
        s = Store.from_url(self.db_url, secrets=SecretBox([KEY]))
        await s.migrate()
        self.stores.append(s)
        return s

    async def poller(self, store: Store | None = None, **options: Any) -> ExpensePoller:
        """A poller with its own store handle, BC hub and publisher channel."""
        store = store or (self.stores[0] if self.stores else await self.store())
        hub = bc_hub(self.settings, options=FAST_POLL)  # a throttling storm outlasts its retries
        self.hubs.append(hub)
        leases = Leases(store)
        ctx = SyncContext(self.settings, ConfigCache(store), hub, claims=leases, outcomes=store)
        return ExpensePoller(
            settings=self.settings,
            store=store,
            ctx=ctx,
            sink=options.pop("sink", None) or Publisher(self.connection, self.settings.exchange),
            leases=leases,
            observers=[self.reports],
            **options,
        )

    async def save_config(self, **overrides: Any) -> None:
        body: dict[str, Any] = {
            "tenant_id": self.emulator.tenant_id,
            "client_secret": self.emulator.client_secret,
            "environment": self.emulator.environment,
            "company_name": "CRONUS%20Sverige%20AB",
            "project_dimension": "PROJEKT",
            "import_expenses": True,
            "expenses_from_date": "2026-01-01",
            "expense_activity": "Inköp",
            "expenses_billable": True,
            **overrides,
        }
        store = self.stores[0] if self.stores else await self.store()
        await store.configs.put(ORG, parse_config(body))

    async def post_invoice(
        self, number: str, posting_date: str, *lines: tuple[str, str | None], **extra: Any
    ) -> dict[str, Any]:
        """Post a purchase invoice in BC: ``lines`` are (description, project or None)."""
        invoice = {
            "number": number,
            "status": "Open",
            "vendor_number": "L3000",
            "vendor_name": "Resebyrån AB",
            "vendor_invoice_number": f"R-{number}",
            "posting_date": posting_date,
            "lines": [
                {
                    "account": "4010",
                    "description": description,
                    "quantity": 1,
                    "unit_cost": 100,
                    "tax_code": "25",
                    "dimensions": {"PROJEKT": project} if project else {},
                }
                for description, project in lines
            ],
            **extra,
        }
        return await self.emulator.control.add_purchase_invoice(
            invoice, at=self.emulator.company_ref
        )

    async def received(self) -> list[dict[str, Any]]:
        """Every expense event Moment has been sent so far (duplicates included)."""
        return [e for e in await self._all() if e["type"] == EVENT_TYPE]

    async def withdrawals(self) -> list[dict[str, Any]]:
        """Every bc.expense.withdrawn Moment has been sent so far (duplicates included)."""
        return [e for e in await self._all() if e["type"] == WITHDRAWN_TYPE]

    async def _all(self) -> list[dict[str, Any]]:
        self.seen.extend(g.json for g in await drain(self.settings, self.queue))
        return list(self.seen)

    async def cancel(self, number: str, **kw: Any) -> dict[str, Any]:
        """BC's "Cancel" on a posted purchase invoice (a corrective credit memo)."""
        return await self.emulator.control.cancel_purchase_invoice(
            at=self.emulator.company_ref, number=number, **kw
        )

    async def distinct(self) -> dict[str, dict[str, Any]]:
        """What a consumer that dedupes by event id keeps."""
        return {e["id"]: e for e in await self.received()}


def lines_of(events: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (e["data"]["expense"]["document_number"], e["data"]["expense"]["description"])
        for e in events
    }


@pytest.fixture
async def expenses(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle, db_url: str
) -> AsyncIterator[Expenses]:
    settings = emulator_settings(tmp_path, emulator, amqp_url=amqp_url, database_url=db_url)
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue_name = settings.queue("moment-expenses")
    queue = await channel.declare_queue(queue_name, durable=False)
    await queue.bind(exchange, EVENT_TYPE)
    await queue.bind(exchange, WITHDRAWN_TYPE)
    world = Expenses(settings, emulator, db_url, connection, queue_name)
    try:
        yield world
    finally:
        for hub in world.hubs:
            await hub.close()
        for store in world.stores:
            await store.close()
        await channel.queue_delete(queue_name, if_unused=False, if_empty=False)
        await channel.exchange_delete(settings.exchange)
        await connection.close()


async def test_posted_lines_on_a_project_become_events_exactly_once(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    await expenses.save_config()
    poller = await expenses.poller()
    published_before = EXPENSES_PUBLISHED._value.get()

    [first] = await poller.run_round()
    assert (first.status, first.published, first.skipped_lines) == ("ok", 4, 1)
    events = await expenses.received()
    assert lines_of(events) == SEEDED  # no draft, no line without the project dimension
    assert EXPENSES_PUBLISHED._value.get() - published_before == 4

    state = await emulator.control.company_state(emulator.company_ref)
    [inv] = [i for i in state["purchaseInvoices"] if i["number"] == "108001"]
    line = inv["purchaseInvoiceLines"][0]
    [event] = [e for e in events if e["data"]["expense"]["id"] == line["id"]]
    assert event["id"] == event_id(ORG, line["id"])
    assert event["type"] == EVENT_TYPE and event["organizationid"] == ORG
    assert event["data"]["expense"] == {
        "id": line["id"],
        "project_number": "4005",
        "activity": "Inköp",
        "billable": True,
        "date": "2026-01-15",
        "description": "Kontorsmaterial projekt",
        "quantity": 2.0,
        "unit_cost": 250.0,
        "amount": 500.0,
        "currency_code": "SEK",
        "vendor_number": "L1000",
        "vendor_name": "Kontorsleverantören AB",
        "document_number": "108001",
        "vendor_invoice_number": "F-2026-0115",
    }
    assert POLLER_LAG.labels(ORG)._value.get() >= 0

    # A second round sends nothing; a new posting exactly that one line.
    [second] = await poller.run_round()
    assert (second.status, second.published) == ("ok", 0)
    assert len(await expenses.received()) == 4
    await expenses.post_invoice("108100", "2026-04-02", ("Tåg Göteborg", "4006"), ("Fika", None))
    [third] = await poller.run_round()
    assert third.published == 1
    assert third.skipped_lines == 2  # the overlap re-reads 108001 (one line without a project)
    new = (await expenses.received())[4:]
    assert lines_of(new) == {("108100", "Tåg Göteborg")}
    assert new[0]["data"]["expense"]["project_number"] == "4006"
    outcomes = {o.object_type: o for o in await expenses.stores[0].outcomes(ORG)}
    assert outcomes["expense"].last_success_at is not None


@SQLITE
async def test_from_date_is_respected_and_moving_it_takes_effect_next_poll(
    expenses: Expenses,
) -> None:
    await expenses.save_config(expenses_from_date="2026-02-01")
    # Modified far later than the seeded invoices: the watermark passes them by a lot.
    await expenses.post_invoice(
        "108101", "2026-03-05", ("Konferens", "4005"), last_modified="2099-01-01T00:00:00Z"
    )
    poller = await expenses.poller()
    [first] = await poller.run_round()
    assert first.watermark is not None and first.watermark.year == 2099
    before = SEEDED - {("108001", "Kontorsmaterial projekt")} | {("108101", "Konferens")}
    assert lines_of(await expenses.received()) == before

    # Earlier: what lies between comes (though older than the watermark), nothing twice.
    await expenses.save_config(expenses_from_date="2026-01-01")
    [earlier] = await poller.run_round()
    assert earlier.published == 1
    assert lines_of((await expenses.received())[4:]) == {("108001", "Kontorsmaterial projekt")}

    # Later: a posting before it is left out, one after it comes.
    await expenses.save_config(expenses_from_date="2026-04-01")
    await expenses.post_invoice(
        "108102", "2026-03-31", ("Före", "4005"), last_modified="2099-01-02T00:00:00Z"
    )
    await expenses.post_invoice(
        "108103", "2026-04-01", ("Efter", "4005"), last_modified="2099-01-03T00:00:00Z"
    )
    [later] = await poller.run_round()
    assert later.published == 1
    events = await expenses.distinct()
    assert len(await expenses.received()) == len(events) == 6
    assert ("108103", "Efter") in lines_of(events.values())


@SQLITE
async def test_activity_rename_and_toggle_take_effect_without_a_restart(
    expenses: Expenses,
) -> None:
    await expenses.save_config()
    poller = await expenses.poller()
    await poller.run_round()
    await expenses.save_config(expense_activity="Material", expenses_billable=False)
    await expenses.post_invoice("108103", "2026-04-03", ("Skruvar", "4005"))
    await poller.run_round()
    [new] = (await expenses.received())[4:]
    assert (new["data"]["expense"]["activity"], new["data"]["expense"]["billable"]) == (
        "Material",
        False,
    )

    await expenses.save_config(import_expenses=False)
    await expenses.post_invoice("108104", "2026-04-04", ("Muttrar", "4005"))
    assert await poller.run_round() == []
    [off] = await poller.run_round([ORG], force=True)
    assert (off.status, off.reason) == ("skipped", "import_off")
    assert len(await expenses.received()) == 5

    await expenses.save_config(import_expenses=True)
    [back] = await poller.run_round()
    assert back.published == 1
    assert lines_of((await expenses.received())[5:]) == {("108104", "Muttrar")}


@SQLITE
async def test_paging_across_three_pages(expenses: Expenses, emulator: EmulatorHandle) -> None:
    await expenses.save_config()
    await expenses.post_invoice("108105", "2026-04-05", ("Hotell", "4005"))
    await expenses.post_invoice("108106", "2026-04-06", ("Taxi", "4006"))
    poller = await expenses.poller(page_size=2)  # 6 invoices (one a draft), 2 a page
    [result] = await poller.run_round()
    assert (result.pages, result.published) == (3, 6)
    assert len(await expenses.distinct()) == len(await expenses.received()) == 6
    reads = await emulator.control.requests(path="purchaseInvoices", method="GET")
    assert sum("skiptoken" in str(r.get("query", "")) for r in reads) == 2  # two nextLinks


@SQLITE
async def test_throttling_during_a_page_completes_later_with_nothing_lost(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    await expenses.save_config()
    await expenses.post_invoice("108107", "2026-04-07", ("Parkering", "4005"))
    publisher = Publisher(expenses.connection, expenses.settings.exchange)

    class ThrottleAfterFirstPage:
        """Publishes for real; after the first page BC starts answering 429."""

        calls = 0

        async def events(self, items: Iterable[tuple[str, bytes, str]]) -> int:
            n = await publisher.events(items)
            ThrottleAfterFirstPage.calls += 1
            if ThrottleAfterFirstPage.calls == 1:
                await emulator.control.add_fault(
                    "status", status=429, path="purchaseInvoices", retry_after=0, count=20
                )
            return n

    poller = await expenses.poller(page_size=2, sink=ThrottleAfterFirstPage())
    [throttled] = await poller.run_round()
    assert (throttled.status, throttled.reason) == ("failed", "BC-THROTTLED")
    assert 0 < len(await expenses.received()) < 5

    await emulator.control.clear_faults()
    [later] = await poller.run_round()
    assert later.status == "ok"
    events = await expenses.received()
    assert len(events) == len({e["id"] for e in events}) == 5  # nothing lost, nothing twice
    assert lines_of(events) == SEEDED | {("108107", "Parkering")}


@SQLITE
async def test_a_crash_between_publish_and_bookkeeping_never_reaches_moment_twice(
    expenses: Expenses,
) -> None:
    await expenses.save_config()
    poller = await expenses.poller()
    state: ExpenseState = poller.state
    real_mark, real_save = state.mark_published, state.save_watermark

    async def crash(*_a: Any, **_k: Any) -> None:
        raise ConnectionError("worker died")

    # Crash after the broker confirmed, before the line ids were stored: the same ids again.
    state.mark_published = crash  # type: ignore[method-assign]
    [crashed] = await poller.run_round()
    assert crashed.status == "failed"
    state.mark_published = real_mark  # type: ignore[method-assign]
    await poller.run_round()
    kept = await expenses.distinct()
    assert len(kept) == 4 and lines_of(kept.values()) == SEEDED
    assert len(await expenses.received()) == 8  # re-sent with the same ids: Moment dedupes

    # Crash after the ids were stored, before the watermark: nothing is sent again.
    await expenses.post_invoice("108108", "2026-04-08", ("Lunch", "4005"))
    state.save_watermark = crash  # type: ignore[method-assign]
    [crashed] = await poller.run_round()
    assert (crashed.status, crashed.reason) == ("failed", "INTERNAL-ERROR")
    state.save_watermark = real_save  # type: ignore[method-assign]
    [after] = await poller.run_round()
    assert (after.status, after.published) == ("ok", 0)
    assert len(await expenses.received()) == 9
    assert len(await expenses.distinct()) == 5


@POSTGRES
async def test_two_pollers_at_once_send_one_set_of_events(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    await expenses.save_config()
    publisher = Publisher(expenses.connection, expenses.settings.exchange)
    meanwhile: list[PollResult] = []

    class OtherReplicaPollsMeanwhile:
        """While the first poller publishes (holding the lease), the second one polls."""

        async def events(self, items: Iterable[tuple[str, bytes, str]]) -> int:
            if not meanwhile:
                meanwhile.extend(await b.run_round())
            return await publisher.events(items)

    a = await expenses.poller(await expenses.store(), sink=OtherReplicaPollsMeanwhile())
    b = await expenses.poller(await expenses.store())
    [first] = await a.run_round()
    assert first.published == 4
    assert [(r.status, r.reason) for r in meanwhile] == [("skipped", "polled_elsewhere")]

    # Both at once, with BC slow enough for the rounds to overlap.
    await expenses.post_invoice("108110", "2026-04-10", ("Flyg", "4006"))
    await emulator.control.set_limits(latency_ms=30)
    results = await asyncio.gather(a.run_round(), b.run_round(), a.run_round(), b.run_round())
    assert sum(r.published for rs in results for r in rs) == 1
    events = await expenses.received()
    assert len(events) == len({e["id"] for e in events}) == 5


@SQLITE
async def test_rejected_credentials_pause_the_organization_until_its_config_is_saved(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    await expenses.save_config()
    poller = await expenses.poller()
    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=False)
    [paused] = await poller.run_round()
    assert (paused.status, paused.reason) == ("paused", "BC-CREDENTIALS-REJECTED")
    [report] = expenses.reports.failures
    assert (report.org, report.object_type, report.code) == (ORG, "expense", paused.reason)
    assert report.final and report.notify_now
    assert emulator.client_secret not in report.message

    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=True)
    await emulator.control.clear_requests()
    [still] = await poller.run_round()
    assert still.status == "paused"
    assert await emulator.control.requests(path="purchaseInvoices") == []  # not polled meanwhile
    assert len(expenses.reports.failures) == 1  # told once

    await expenses.save_config()  # the admin saves the integration again
    [resumed] = await poller.run_round()
    assert (resumed.status, resumed.published) == ("ok", 4)


@SQLITE
async def test_project_dimension_gone_in_bc_pauses_and_tells_a_person(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    await expenses.save_config()
    await emulator.control.delete("dimension", "PROJEKT", at=emulator.company_ref)
    poller = await expenses.poller()
    [paused] = await poller.run_round()
    assert (paused.status, paused.reason) == ("paused", "BC-DIMENSION-MISSING")
    assert "PROJEKT" in (paused.message or "")
    [report] = expenses.reports.failures
    assert report.code == "BC-DIMENSION-MISSING" and report.notify_now
    assert await expenses.received() == []


@SQLITE
async def test_the_poll_role_runs_on_its_interval_until_stopped(expenses: Expenses) -> None:
    await expenses.save_config()
    poller = await expenses.poller(interval_s=0.2)
    await poller.start()
    try:
        await wait_for(lambda: _count(expenses, 4), timeout=15)
        await expenses.post_invoice("108109", "2026-04-09", ("Kaffe", "4005"))
        await wait_for(lambda: _count(expenses, 5), timeout=15)
    finally:
        await poller.stop()
    events = await expenses.received()
    assert len(events) == len({e["id"] for e in events}) == 5


async def _count(expenses: Expenses, n: int) -> bool:
    return len(await expenses.received()) >= n


# --- cancelled purchase invoices (bc-api.md Corrections 7) ------------------------------------


async def _two_line_invoice(expenses: Expenses) -> None:
    """A posted, unpaid invoice with two lines on projects (108003 is paid: BC refuses to
    cancel a paid invoice)."""
    await expenses.post_invoice("108300", "2026-03-10", ("Hotell", "4005"), ("Tåg", "4006"))


def withdrawn_lines(events: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["data"]["expense"]["document_number"], e["data"]["expense"]["id"]) for e in events}


async def _line_ids(emulator: EmulatorHandle, number: str) -> dict[str, str]:
    state = await emulator.control.company_state(emulator.company_ref)
    [inv] = [i for i in state["purchaseInvoices"] if i["number"] == number]
    return {ln["description"]: ln["id"] for ln in inv["purchaseInvoiceLines"]}


@SQLITE
async def test_lines_of_a_cancelled_invoice_are_never_imported(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    """Cancelled before the first poll (BC's Cancel, or already Canceled when first seen): its
    lines never reach Moment, and nothing is withdrawn that was never imported."""
    await expenses.save_config()
    await expenses.post_invoice("108200", "2026-03-01", ("Hyrbil", "4005"), status="Canceled")
    await expenses.cancel("108002")
    poller = await expenses.poller()
    [first] = await poller.run_round()
    assert (first.status, first.published, first.withdrawn) == ("ok", 3, 0)
    assert lines_of(await expenses.received()) == SEEDED - {("108002", "Serverhyra februari")}
    [again] = await poller.run_round()
    assert (again.published, again.withdrawn) == (0, 0)
    assert await expenses.withdrawals() == []


async def test_an_imported_invoice_cancelled_later_withdraws_each_line_exactly_once(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    await expenses.save_config()
    await _two_line_invoice(expenses)
    poller = await expenses.poller()
    [first] = await poller.run_round()
    assert first.published == 6
    imported = {e["data"]["expense"]["id"]: e for e in await expenses.received()}

    answer = await expenses.cancel("108300")
    [second] = await poller.run_round()
    assert (second.status, second.published, second.withdrawn) == ("ok", 0, 2)
    withdrawals = await expenses.withdrawals()
    ids = await _line_ids(emulator, "108300")
    assert withdrawn_lines(withdrawals) == {("108300", i) for i in ids.values()}
    by_line = {e["data"]["expense"]["id"]: e for e in withdrawals}
    train = by_line[ids["Tåg"]]
    assert train["id"] == withdrawn_event_id(ORG, ids["Tåg"])
    assert train["type"] == WITHDRAWN_TYPE and train["organizationid"] == ORG
    data = train["data"]["expense"]
    assert data == {
        "id": ids["Tåg"],
        "imported_event_id": imported[ids["Tåg"]]["id"],
        "project_number": "4006",
        "document_number": "108300",
        "bc_invoice_id": answer["id"],
        "reason": "canceled",
        "seen_at": data["seen_at"],
    }
    assert data["seen_at"].endswith(("Z", "+00:00"))

    # Nothing more, however often it is polled; another cancellation withdraws its own line.
    for _ in range(3):
        [later] = await poller.run_round()
        assert later.withdrawn == 0
    await expenses.cancel("108001")
    [third] = await poller.run_round()
    assert third.withdrawn == 1  # its second line has no project: never imported
    events = await expenses.withdrawals()
    assert len(events) == len({e["id"] for e in events}) == 3
    assert len(await expenses.received()) == 6  # nothing imported again


@SQLITE
async def test_a_cancellation_the_change_read_misses_is_found_by_the_re_check(
    expenses: Expenses, emulator: EmulatorHandle
) -> None:
    """The stricter assumption: the row's lastModifiedDateTime may lie behind the watermark
    (the modify committed late). The change read does not see it; the bounded re-check of
    imported invoices (oldest checked first) does, within its budget per round."""
    await expenses.save_config()
    blind = await expenses.poller(check_requests=0)
    await blind.run_round()
    await expenses.cancel("108002", modified_at="2026-02-03T09:00:00Z")
    [missed] = await blind.run_round()
    assert (missed.status, missed.withdrawn) == ("ok", 0)  # the change read alone misses it

    poller = await expenses.poller(check_requests=1, check_batch=1)
    rounds = 0
    while not await expenses.withdrawals():
        await emulator.control.clear_requests()
        [result] = await poller.run_round()
        rounds += 1
        reads = await emulator.control.requests(path="purchaseInvoices", method="GET")
        checks = [r for r in reads if "id eq" in str(r["query"])]
        assert len(checks) <= 1 and result.checked <= 1  # the budget: one request a round
        assert rounds <= 3, "three imported invoices, one checked a round"
    [event] = await expenses.withdrawals()
    assert event["data"]["expense"]["document_number"] == "108002"
    [after] = await poller.run_round()
    assert after.withdrawn == 0


@SQLITE
async def test_a_crash_between_withdrawal_and_bookkeeping_never_withdraws_twice(
    expenses: Expenses,
) -> None:
    await expenses.save_config()
    await _two_line_invoice(expenses)
    poller = await expenses.poller()
    await poller.run_round()
    await expenses.cancel("108300")
    state: ExpenseState = poller.state
    real = state.mark_withdrawn

    async def crash(*_a: Any, **_k: Any) -> None:
        raise ConnectionError("worker died")

    state.mark_withdrawn = crash  # type: ignore[method-assign]
    [crashed] = await poller.run_round()
    assert crashed.status == "failed"
    state.mark_withdrawn = real  # type: ignore[method-assign]
    restarted = await expenses.poller()  # a new process on the same store
    [again] = await restarted.run_round()
    assert (again.status, again.withdrawn) == ("ok", 2)
    events = await expenses.withdrawals()
    assert len(events) == 4 and len({e["id"] for e in events}) == 2  # same ids: Moment dedupes
    [done] = await restarted.run_round()
    assert done.withdrawn == 0
    assert len(await expenses.withdrawals()) == 4


@POSTGRES
async def test_two_pollers_withdraw_one_set(expenses: Expenses, emulator: EmulatorHandle) -> None:
    await expenses.save_config()
    a = await expenses.poller(await expenses.store())
    b = await expenses.poller(await expenses.store())
    await _two_line_invoice(expenses)
    await a.run_round()
    await expenses.cancel("108300")
    await expenses.cancel("108002", modified_at="2026-02-03T09:00:00Z")  # found by the re-check
    await emulator.control.set_limits(latency_ms=30)
    results = await asyncio.gather(a.run_round(), b.run_round(), a.run_round(), b.run_round())
    assert sum(r.withdrawn for rs in results for r in rs) == 3
    events = await expenses.withdrawals()
    assert len(events) == len({e["id"] for e in events}) == 3


@SQLITE
async def test_lines_imported_before_the_store_kept_their_invoice_are_withdrawn_too(
    expenses: Expenses,
) -> None:
    """Migration step 6: lines published before it have no invoice. A cancelled invoice the
    change read returns is matched by its line ids; the next full read names the others."""
    await expenses.save_config()
    await _two_line_invoice(expenses)
    poller = await expenses.poller()
    await poller.run_round()
    store = expenses.stores[0]
    async with store.write() as conn:
        await conn.execute(
            sa_text("UPDATE published_expenses SET invoice_id = NULL, project_number = NULL")
        )
        await conn.execute(sa_text("DELETE FROM expense_invoices"))
    await expenses.cancel("108300")
    [result] = await poller.run_round()
    assert result.withdrawn == 2
    projects = {e["data"]["expense"]["project_number"] for e in await expenses.withdrawals()}
    assert projects == {"4005", "4006"}  # read from the lines BC returned
