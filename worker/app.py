"""The composition root: the shared objects of one process, and the roles of ``bc-sync run``.

Settings are read here and handed on as values (``bc_endpoints``); the process's one broker
connection (:class:`Runtime`) is injected into the consumer, the publisher, the dead-letter
sampler and the dead-letter operations of the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import structlog
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import AMQPError, ProbableAuthenticationError

from worker.api.app import (
    DLQ_LOCK_WAIT_S,
    ApiContext,
    ApiServer,
    StatusSection,
    api_tokens,
    create_app,
)
from worker.api.contract import ROUTES
from worker.bc import BcEndpoints, BcHub, ClientOptions
from worker.bc.pages import ODataServices
from worker.config.settings import Settings
from worker.console import ConsoleContext, add_console
from worker.console.integration_log import LedgerReader
from worker.console.overview import Overview
from worker.console.sessions import Sessions, SignInLimiter
from worker.events.envelope import build
from worker.events.handlers import Observer
from worker.events.models import Model
from worker.log import register_secret
from worker.messaging import connection as broker
from worker.messaging.consumer import Consumer
from worker.messaging.publisher import Publisher
from worker.messaging.retry_watch import RetryWatch
from worker.messaging.topology import Topology
from worker.notify import (
    DigestService,
    NotificationRecorder,
    NotificationRepository,
    digest_status,
)
from worker.notify.retention import Retention
from worker.ops.dlq import DeadLetters
from worker.ops.dlq.index import DeadLetterIndex, DeadLetterIndexer
from worker.ops.dlq.runs import IndexReconciler, Operations
from worker.ops.heal import Healer
from worker.ops.health import readiness_checks
from worker.ops.integration_log import IntegrationLog
from worker.ops.reconcile import Reconciler
from worker.ops.sampler import DeadLetterSampler
from worker.ops.signals import SignalObserver, SignalRepository
from worker.runtime import Service, patiently
from worker.setup.service import ConfigService
from worker.store import ConfigCache, Leases, ScheduledRetries, Store, iso
from worker.store import unavailable as store_unavailable
from worker.sync import registry
from worker.sync.context import SyncContext
from worker.sync.expenses import ExpenseState, PollState
from worker.sync.ledger import LedgerRepository
from worker.sync.payments import PaymentPoller, PaymentState
from worker.sync.poller import ExpensePoller
from worker.sync.status import StatusObserver, SuccessBuffer
from worker.sync.tracking import Ledger

log = structlog.get_logger(__name__)

ROLES = ("consume", "poll", "api", "notify")
# How long ``bc-sync run`` waits for a broker that does not answer at start (a restart, a
# network cut) before it gives up.
BROKER_WAIT_S = 60.0  # also how long it waits for the database (migrations)


def check_roles(settings: Settings, roles: Sequence[str]) -> None:
    """Raise :class:`~worker.config.settings.SettingsError` when a role lacks a setting it
    needs (before anything connects)."""
    if "api" in roles:
        api_tokens(settings)


def bc_endpoints(settings: Settings) -> BcEndpoints:
    """The BC client's configuration, from the process settings."""
    return BcEndpoints(
        api_url=settings.bc_api_url,
        authority_url=settings.authority_url,
        ca_file=settings.ca_file,
        client_id=settings.client_id,
        services=ODataServices(
            settings.odata_dimension_values,
            settings.odata_customer_card,
            settings.odata_gen_bus_posting_groups,
            settings.odata_customer_posting_groups,
        ),
    )


def bc_hub(settings: Settings, *, options: ClientOptions | None = None) -> BcHub:
    """The process's BC client state, configured from the settings."""
    return BcHub(bc_endpoints(settings), options=options)


@dataclass
class Runtime:
    """Store, config cache, BC hub and broker connection, shared by every role of a process.

    It is the first service started and the last stopped.
    """

    settings: Settings
    store: Store
    configs: ConfigCache
    hub: BcHub
    connection: AbstractRobustConnection
    publisher: Publisher
    leases: Leases
    successes: SuccessBuffer
    ledger: Ledger
    observers: list[Observer] = field(default_factory=list)
    name: str = "runtime"

    @classmethod
    async def open(cls, settings: Settings, *, broker_wait_s: float = 0.0) -> Runtime:
        """Open the store and the broker connection, and declare the topology.

        ``broker_wait_s`` > 0 (``bc-sync run``): a broker that is restarting or cut off keeps
        being retried for that long instead of ending the process at once.
        """
        for secret in (settings.api_token, settings.smtp_url):
            if secret is not None:
                register_secret(secret.get_secret_value())
        store = Store.from_settings(settings)
        try:
            await _migrate(store, broker_wait_s)
        except BaseException:
            await store.close()
            raise
        try:
            connection = await _connect(settings, broker_wait_s)
        except BaseException:
            await store.close()
            raise
        runtime = cls(
            settings=settings,
            store=store,
            configs=ConfigCache(store),
            hub=bc_hub(settings),
            connection=connection,
            publisher=Publisher(connection, settings.exchange),
            leases=Leases(store),
            successes=SuccessBuffer(store.sync_outcomes),
            ledger=Ledger(LedgerRepository(store)),
        )
        runtime.ledger.emit = runtime.emit  # bc.sync.status
        runtime.observers.append(runtime.ledger.observer)
        return runtime

    async def emit(self, type_: str, org: str, data: Model, event_id: str) -> None:
        """Publish an outgoing event for Moment, confirmed by the broker."""
        await self.publisher.event(
            type_, build(type_, org, data, id_=event_id), message_id=event_id
        )

    def sync_context(self) -> SyncContext:
        return SyncContext(
            self.settings,
            self.configs,
            self.hub,
            claims=self.leases,
            outcomes=self.successes,
            emit=self.emit,
            exports=PaymentState(self.store),
            ledger=self.ledger,
        )

    async def start(self) -> None:
        await self.successes.start()
        await self.ledger.start()

    async def stop(self) -> None:
        await self.successes.stop()  # after the consumer drained (services stop in reverse)
        await self.ledger.stop()
        await self.publisher.close()
        await self.connection.close()
        await self.hub.close()
        await self.store.close()


async def _migrate(store: Store, wait_s: float) -> None:
    """Bring the schema up to date, waiting up to ``wait_s`` for a database that is restarting
    or not up yet (a worker started during a PostgreSQL restart waits, as for the broker)."""
    await patiently(
        store.migrate, wait_s, retry=store_unavailable, event="runtime.store_unreachable"
    )


def _broker_trouble(exc: BaseException) -> bool:
    # Wrong credentials do not get better by waiting.
    return not isinstance(exc, ProbableAuthenticationError) and isinstance(
        exc, (AMQPError, ConnectionError, OSError, TimeoutError)
    )


async def _connect(settings: Settings, wait_s: float) -> AbstractRobustConnection:
    """The process's broker connection with the topology declared, retried for ``wait_s``."""

    async def attempt() -> AbstractRobustConnection:
        connection = await broker.connect_robust(settings, name="bc-sync")
        try:
            channel = await connection.channel()
            await Topology.from_settings(settings).apply(channel)
            await channel.close()
        except BaseException:
            with suppress(Exception):
                await connection.close()
            raise
        return connection

    return await patiently(
        attempt, wait_s, retry=_broker_trouble, event="runtime.broker_unreachable"
    )


async def build_services(settings: Settings, roles: Sequence[str]) -> list[Service]:
    """The services of ``bc-sync run --roles …``; every process also serves health and metrics."""
    runtime = await Runtime.open(settings, broker_wait_s=BROKER_WAIT_S)
    services: list[Service] = [runtime]
    notifications = NotificationRepository(runtime.store)
    # Every consuming or polling process records what needs a person; the notify role sends it.
    runtime.observers.append(NotificationRecorder(notifications))
    consumers: list[Consumer] = []
    index = DeadLetterIndex(runtime.store)
    signals = SignalRepository(runtime.store)
    if "consume" in roles:
        consumer = Consumer(
            settings,
            registry(runtime.sync_context()),
            observers=[
                StatusObserver(runtime.store),
                # The console's dead-letter index and per-organization health signals.
                DeadLetterIndexer(index),
                SignalObserver(signals),
                *runtime.observers,
            ],
            connection=runtime.connection,
            watch=_retry_watch(runtime),
        )
        consumers.append(consumer)
        services.append(consumer)
    if "poll" in roles:
        services.append(ExpensePoller.from_runtime(runtime))
        services.append(PaymentPoller.from_runtime(runtime))
        services.append(_healer(runtime))  # dead letters that heal themselves
    if "notify" in roles:
        services.append(
            DigestService(
                settings,
                notifications,
                runtime.configs,
                runtime.leases,
                publisher=runtime.publisher,
            )
        )
        services.append(Retention(settings, runtime.store, runtime.leases))  # prune by age
    readiness = readiness_checks(consumers=consumers, store_ping=_pinger(runtime.store))
    if "api" in roles:
        dead_letters = DeadLetters(settings, runtime.connection, lock_wait=DLQ_LOCK_WAIT_S)
        sampler = DeadLetterSampler(
            settings, connection=runtime.connection, dead_letters=dead_letters
        )
        ctx = ApiContext(
            settings,
            config=ConfigService(runtime.store, runtime.hub, runtime.configs),
            dead_letters=dead_letters,
            dead_letter_counts=sampler.counts,
            status_sections=_status_sections(runtime.store, settings),
            readiness=readiness,
            integration_log=IntegrationLog(runtime.store),
            reconciler=Reconciler.with_hub(settings, runtime.store, runtime.configs, runtime.hub),
        )
        services.append(sampler)
        operations = Operations(runtime.store, dead_letters, index)
        services.append(operations)
        services.append(IndexReconciler(runtime.store, dead_letters, index, runtime.leases))
        # New route modules go into ROUTES: the OpenAPI document is generated from that list.
        app = create_app(ctx, ROUTES)
        add_console(
            app,
            ConsoleContext(
                settings=settings,
                store=runtime.store,
                tokens=api_tokens(settings),
                index=index,
                operations=operations,
                overview=Overview(
                    runtime.store, index, signals, poll_interval_s=settings.poll_interval_s
                ),
                sessions=Sessions(runtime.store),
                limiter=SignInLimiter(runtime.store),
                integration_log=LedgerReader(ctx.log()),
                reconciliation=ctx.reconciler,
            ),
        )
    else:
        app = create_app(ApiContext(settings, readiness=readiness))
    services.append(ApiServer(app, settings.http_host, settings.http_port))
    return services


def _retry_watch(runtime: Runtime) -> RetryWatch | None:
    """The consumer's record of what it put on the retry ladder (off with a grace of 0)."""
    settings = runtime.settings
    if settings.retry_watch_grace_s <= 0:
        return None
    return RetryWatch(
        ScheduledRetries(runtime.store),
        runtime.leases,
        Topology.from_settings(settings),
        grace_s=settings.retry_watch_grace_s,
        interval_s=settings.retry_watch_interval_s,
    )


def _healer(runtime: Runtime) -> Healer:
    return Healer(
        runtime.settings,
        runtime.store,
        runtime.configs,
        runtime.hub,
        runtime.leases,
        connection=runtime.connection,
    )


def _pinger(store: Store) -> Any:
    async def ping() -> None:
        if not await store.ping():
            raise ConnectionError("store unreachable")

    return ping


def _status_sections(store: Store, settings: Settings) -> dict[str, StatusSection]:
    """Expense and payment import and notifications in ``GET …/status`` (after the config
    routes' own)."""

    async def expenses(org: str) -> Any:
        return _poll_status(await ExpenseState(store).get(org))

    async def payments(org: str) -> Any:
        state = PaymentState(store)
        counts = await state.counts(org)
        invoices = {"open": counts.get("Open", 0), "paid": counts.get("Paid", 0)}
        return {**_poll_status(await state.get(org)), "invoices": invoices}

    async def notifications(org: str) -> Any:
        return await digest_status(store, org, settings)

    return {"expenses": expenses, "payments": payments, "notifications": notifications}


def _poll_status(state: PollState | None) -> dict[str, Any]:
    """One import's poll state for the status answer."""
    if state is None:
        return {"polled": False}
    return {
        "polled": True,
        "watermark": iso(state.watermark),
        "last_poll_at": iso(state.last_poll_at),
        "last_success_at": iso(state.last_success_at),
        "last_error_code": state.last_error_code,
        "last_error_message": state.last_error_message,
        "paused": state.paused_at is not None,
    }
