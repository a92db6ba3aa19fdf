"""End-to-end harness for the export tests: real RabbitMQ → real Consumer with the real
registry → real BC client (msal) → the BC emulator over HTTPS, with the integration config saved
in a real store.

``exports`` (fixture, :mod:`tests.support.fixtures_exports`) yields an :class:`Exports`: start
one or more in-process workers (each a :class:`worker.app.Runtime` with its own broker
connection, store handle and BC hub, all on the same database), publish Moment events, and look
at what landed in BC, the dead letters and the ``bc.*.exported`` events.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.amqp import Got, depth, drain, drop_topology, publish
from tests.support.cli import cli_env, run_cli
from tests.support.db import KEY
from tests.support.settings import FAST_EXPORTS, make_settings
from tests.support.wait import wait_for
from worker.app import Runtime, bc_hub
from worker.config.model import IntegrationConfig, parse_config
from worker.config.settings import Settings
from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Observer, Outcome, WaitingReport
from worker.messaging.consumer import Consumer
from worker.messaging.topology import Topology
from worker.notify import NotificationRecorder, NotificationRepository
from worker.sync import registry
from worker.sync.status import StatusObserver

ORG = f.ORG
EXPORTED_KEYS = (
    "bc.customer.exported",
    "bc.project.exported",
    "bc.invoice.exported",
    "bc.credit_note.exported",
)


def config_body(emulator: EmulatorHandle, **overrides: Any) -> dict[str, Any]:
    """The demo organization's integration config (every export on), with overrides."""
    abroad = {"gen_bus_posting_group": "EU", "customer_posting_group": "KUNDER-EXP"}
    domestic = {"gen_bus_posting_group": "INRIKES", "customer_posting_group": "KUNDER"}
    body = f.exports_only(
        tenant_id=emulator.tenant_id,
        client_secret=emulator.client_secret,
        environment=emulator.environment,
        customer_posting_groups={"domestic": domestic, "abroad": abroad},
    )
    body.update(overrides)
    return body


def account_invoice(number: str, account: str, customer: str = "10000") -> dict[str, Any]:
    """``moment.invoice.created`` data: one line on ``account``, project 4005, department 100."""
    c = f.customer(customer)
    line = {
        "description": "Consulting",
        "quantity": 2,
        "unit_price": 500.0,
        "account_number": account,
        "vat_code": "25",
        "project": f.project("4005", department="100", cust=c),
    }
    return {"invoice": f.invoice(number, cust=c, lines=[line])}


class Tracker(Observer):
    """Outcomes per event id, as the consumers saw them (shared by every worker)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, list[str]] = {}
        self.waiting: list[WaitingReport] = []

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        self.outcomes.setdefault(event.id, []).append(outcome.kind)

    async def on_waiting(self, report: WaitingReport) -> None:
        self.waiting.append(report)
        self.outcomes.setdefault(report.event_id, []).append("waiting")

    async def on_failure(self, report: FailureReport) -> None:
        kind = "dead_lettered" if report.final else "retried"
        self.outcomes.setdefault(report.event_id or "", []).append(kind)

    def finished(self, event_id: str) -> int:
        """Deliveries of this event that ended (succeeded, skipped, waiting or dead-lettered)."""
        return len([k for k in self.outcomes.get(event_id, []) if k != "retried"])


@dataclass
class Worker:
    """One in-process worker: its runtime (store, cache, hub, broker) and its consumer."""

    runtime: Runtime
    consumer: Consumer

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.runtime.stop()


@dataclass
class Exports:
    """The test's view: its workers, the settings they share, and the emulator."""

    settings: Settings
    emulator: EmulatorHandle
    workers: list[Worker] = field(default_factory=list)
    tracker: Tracker = field(default_factory=Tracker)
    _out_queue: str | None = None

    # -- workers and config -------------------------------------------------------------------

    async def start_worker(self) -> Worker:
        runtime = await Runtime.open(self.settings)
        await runtime.hub.close()
        runtime.hub = bc_hub(self.settings, options=FAST_EXPORTS)
        consumer = Consumer(
            self.settings,
            registry(runtime.sync_context()),
            # As build_services wires them: the status, what needs a person, the sync ledger's
            # (runtime.observers), and the test's view last (tests wait on it).
            observers=[
                StatusObserver(runtime.store),
                NotificationRecorder(NotificationRepository(runtime.store)),
                *runtime.observers,
                self.tracker,
            ],
            connection=runtime.connection,
        )
        await consumer.start()
        worker = Worker(runtime, consumer)
        self.workers.append(worker)
        return worker

    @property
    def runtime(self) -> Runtime:
        return self.workers[0].runtime

    async def save_config(self, **overrides: Any) -> IntegrationConfig:
        """Save the config in the shared store; every worker sees it at once."""
        config = parse_config(config_body(self.emulator, **overrides))
        await self.runtime.store.configs.put(ORG, config)
        for w in self.workers:
            w.runtime.configs.invalidate(ORG)
        return config

    async def listen_exported(self) -> None:
        """Bind a queue to ``bc.*.exported`` so the test can read what Moment would get."""
        name = self.settings.queue("test-exported")
        connection = await aio_pika.connect(self.settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, durable=False, auto_delete=False)
            for key in EXPORTED_KEYS:
                await queue.bind(self.settings.exchange, key)
        self._out_queue = name

    async def exported(self, n: int, timeout: float = 15.0) -> list[Got]:
        """Wait until ``n`` exported events arrived and return them."""
        assert self._out_queue is not None, "call listen_exported() first"
        got: list[Got] = []

        async def enough() -> bool:
            got.extend(await drain(self.settings, self._out_queue or ""))
            return len(got) >= n

        await wait_for(enough, timeout)
        return got

    # -- events -------------------------------------------------------------------------------

    async def send(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        id_: str | None = None,
        org: str = ORG,
        time: str | None = None,
    ) -> str:
        event_id = id_ or str(uuid.uuid4())
        body = f.body(type_, data, org=org, id_=event_id, time=time)
        await publish(self.settings, body, type_)
        return event_id

    async def done(self, event_id: str, n: int = 1, timeout: float = 15.0) -> list[str]:
        """Wait until ``n`` deliveries of the event ended; their outcomes, in order."""
        await wait_for(lambda: self.tracker.finished(event_id) >= n, timeout)
        return [k for k in self.tracker.outcomes[event_id] if k != "retried"]

    async def dead(self, n: int = 1, timeout: float = 15.0) -> list[Got]:
        got: list[Got] = []

        async def enough() -> bool:
            got.extend(await drain(self.settings, self.settings.queue("dead")))
            return len(got) >= n

        await wait_for(enough, timeout)
        return got

    async def dead_count(self) -> int:
        return await depth(self.settings, self.settings.queue("dead"))

    # -- Business Central ---------------------------------------------------------------------

    async def company(self) -> dict[str, Any]:
        return await self.emulator.control.company_state(self.emulator.company_ref)

    async def customer(self, number: str) -> dict[str, Any] | None:
        rows = (await self.company()).get("customers", [])
        return next((c for c in rows if c.get("number") == number), None)

    async def invoices(self, external: str) -> list[dict[str, Any]]:
        rows = (await self.company()).get("salesInvoices", [])
        return [i for i in rows if i.get("externalDocumentNumber") == external]

    async def posted(self, external: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until the invoice with this external document number is posted in BC."""

        async def find() -> dict[str, Any] | None:
            # Not by status: a released draft shows "Open" like a posted invoice. The emulator's
            # state gives unposted invoices their Sales Header "documentStatus".
            done = [i for i in await self.invoices(external) if "documentStatus" not in i]
            return done[0] if done else None

        result: dict[str, Any] = await wait_for(find, timeout, interval=0.1)
        return result

    async def credit_memos(self, external: str) -> list[dict[str, Any]]:
        rows = (await self.company()).get("salesCreditMemos", [])
        return [m for m in rows if m.get("externalDocumentNumber") == external]

    async def posted_credit_memo(self, external: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until the credit memo with this external document number is posted in BC."""

        async def find() -> dict[str, Any] | None:
            done = [m for m in await self.credit_memos(external) if "documentStatus" not in m]
            return done[0] if done else None

        result: dict[str, Any] = await wait_for(find, timeout, interval=0.1)
        return result

    async def dimension_value(self, dimension: str, code: str) -> dict[str, Any] | None:
        for dim in (await self.company()).get("dimensions", []):
            if dim["code"] == dimension:
                return next((v for v in dim["values"] if v["code"] == code), None)
        return None

    async def seed_customer(self, number: str, *, posting_groups: bool = True) -> None:
        """A customer that is already in BC; without posting groups it is one whose export
        stopped between creating it and setting them."""
        groups = ("INRIKES", "KUNDER") if posting_groups else ("", "")
        customer = {
            "number": number,
            "name": f"Kund {number} AB",
            "country": "SE",
            "gen_bus_posting_group": groups[0],
            "customer_posting_group": groups[1],
        }
        company = {"name": self.emulator.company_name, "customers": [customer]}
        environment = {"name": self.emulator.environment, "companies": [company]}
        await self.emulator.control.seed(
            {"tenants": [{"id": self.emulator.tenant_id, "environments": [environment]}]}
        )

    async def add_gl_account(self, number: str) -> None:
        """A G/L account the BC admin adds (a posting account of the demo company)."""
        company = {"name": self.emulator.company_name, "gl_accounts": [{"number": number}]}
        environment = {"name": self.emulator.environment, "companies": [company]}
        await self.emulator.control.seed(
            {"tenants": [{"id": self.emulator.tenant_id, "environments": [environment]}]}
        )

    async def bc_requests(self, since: int = 0) -> list[dict[str, Any]]:
        """Top-level BC requests (no token calls, no inner $batch operations) after ``since``."""
        rows = await self.emulator.control.requests(since=since)
        return [
            r
            for r in rows
            if r["batch_parent"] is None
            and "/oauth2/" not in r["path"]
            and "openid" not in r["path"]
            and "/_emulator/" not in r["path"]
        ]

    async def last_seq(self) -> int:
        rows = await self.emulator.control.requests()
        return max((r["seq"] for r in rows), default=0)

    async def idle(self) -> None:
        """Wait until no worker has a message in hand and our queues (but the dead letters) are
        empty. Prefer :meth:`done` when the event id is known."""
        names = [q.name for q in Topology.from_settings(self.settings).queues]
        names.remove(self.settings.queue("dead"))

        async def quiet() -> bool:
            if any(w.consumer.in_flight for w in self.workers):
                return False
            return all([await depth(self.settings, name) == 0 for name in names])

        await wait_for(quiet, 15)


async def bc_sync(exports: Exports, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``bc-sync ARGV`` in its own process, on the harness's broker, store and BC emulator."""
    return await run_cli(cli_env(exports.settings, store_and_bc=True), cwd, *argv)


@asynccontextmanager
async def open_exports(
    request: pytest.FixtureRequest,
    amqp_url: str,
    tmp_path: Path,
    emulator: EmulatorHandle,
    **overrides: Any,
) -> AsyncIterator[Exports]:
    """The ``exports`` fixture with other settings (e.g. a slower retry ladder)."""
    database: dict[str, Any] = {}
    if getattr(request, "param", "sqlite") == "postgresql":
        database["database_url"] = request.getfixturevalue("pg_database")
    ladder = request.node.get_closest_marker("retry_delays")
    values: dict[str, Any] = {
        **database,
        "amqp_url": amqp_url,
        "bc_api_url": emulator.url,
        "authority_url": emulator.url,
        "ca_file": emulator.ca_file,
        "client_id": emulator.client_id,
        "secret_key": KEY,
        "retry_delays": tuple(ladder.args) if ladder else (0.2, 0.4, 0.8),
        **overrides,
    }
    settings = make_settings(tmp_path, **values)
    harness = Exports(settings, emulator)
    try:
        await harness.start_worker()
        await harness.save_config()
        yield harness
    finally:
        for w in reversed(harness.workers):
            await w.stop()
        if harness._out_queue is not None:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(harness._out_queue)
        await drop_topology(settings)
