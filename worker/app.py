"""Wiring: the shared objects of one process, and the roles of ``bc-sync run``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pydantic import BaseModel

from worker.api import config_routes, objects_routes, ops_routes
from worker.api.app import ApiContext, ApiServer, create_app
from worker.bc import BcHub
from worker.config.cache import ConfigCache
from worker.config.leases import Leases
from worker.config.settings import Settings
from worker.config.store import Store
from worker.events.envelope import build
from worker.events.handlers import Observer
from worker.log import register_secret
from worker.messaging.consumer import Consumer
from worker.messaging.publisher import Publisher
from worker.messaging.topology import Topology
from worker.notify import (
    DigestService,
    NotificationRecorder,
    NotificationRepository,
    digest_status,
)
from worker.ops.heal import Healer
from worker.ops.health import readiness_checks
from worker.ops.retention import Retention
from worker.ops.sampler import DeadLetterSampler
from worker.runtime import Service
from worker.sync import registry
from worker.sync.context import SyncContext
from worker.sync.expenses import ExpenseState
from worker.sync.ledger import LedgerRepository
from worker.sync.poller import ExpensePoller
from worker.sync.status import StatusObserver, SuccessBuffer
from worker.sync.tracking import Ledger

log = structlog.get_logger(__name__)


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
    async def open(cls, settings: Settings) -> Runtime:
        for secret in (settings.api_token, settings.smtp_url):
            if secret is not None:
                register_secret(secret.get_secret_value())
        store = Store.from_settings(settings)
        await store.migrate()
        connection = await aio_pika.connect_robust(
            settings.amqp_url.get_secret_value(),
            client_properties={"connection_name": "bc-sync"},
            reconnect_interval=2.0,
        )
        channel = await connection.channel()
        await Topology.from_settings(settings).apply(channel)
        await channel.close()
        runtime = cls(
            settings=settings,
            store=store,
            configs=ConfigCache(store),
            hub=BcHub(settings),
            connection=connection,
            publisher=Publisher(connection, settings.exchange),
            leases=Leases(store),
            successes=SuccessBuffer(store.sync_outcomes),
            ledger=Ledger(LedgerRepository(store)),
        )
        runtime.ledger.emit = runtime.emit  # bc.sync.status
        runtime.observers.append(runtime.ledger.observer)
        return runtime

    async def emit(self, type_: str, org: str, data: BaseModel, event_id: str) -> None:
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


async def build_services(settings: Settings, roles: Sequence[str]) -> list[Service]:
    """The services of ``bc-sync run --roles …``; every process also serves health and metrics."""
    runtime = await Runtime.open(settings)
    services: list[Service] = [runtime]
    notifications = NotificationRepository(runtime.store)
    # Every consuming or polling process records what needs a person; the notify role sends it.
    runtime.observers.append(NotificationRecorder(notifications))
    ctx = ApiContext(settings=settings, services={"runtime": runtime, "store": runtime.store})
    consumers: list[Consumer] = []
    if "consume" in roles:
        consumer = Consumer(
            settings,
            registry(runtime.sync_context()),
            observers=[StatusObserver(runtime.store), *runtime.observers],
            connection=runtime.connection,
        )
        consumers.append(consumer)
        services.append(consumer)
    if "poll" in roles:
        services.append(ExpensePoller.from_runtime(runtime))
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
    ctx.readiness.update(readiness_checks(consumers=consumers, store_ping=_pinger(runtime.store)))
    routes: list[Any] = []
    if "api" in roles:
        routes.append(ops_routes.add_routes)
        routes.append(config_routes.add_routes)
        routes.append(objects_routes.add_routes)  # the integration log
        routes.append(_status_sections(runtime.store, settings))
        services.append(DeadLetterSampler(settings))
    services.append(ApiServer(create_app(ctx, routes), settings.http_host, settings.http_port))
    return services


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


def _status_sections(store: Store, settings: Settings) -> Any:
    """Expense import and notifications in ``GET …/status`` (after the config routes' own)."""

    async def expenses(_request: web.Request, org: str) -> Any:
        state = await ExpenseState(store).get(org)
        if state is None:
            return {"polled": False}
        return {
            "polled": True,
            "watermark": _iso(state.watermark),
            "last_poll_at": _iso(state.last_poll_at),
            "last_success_at": _iso(state.last_success_at),
            "last_error_code": state.last_error_code,
            "last_error_message": state.last_error_message,
            "paused": state.paused_at is not None,
        }

    async def notifications(_request: web.Request, org: str) -> Any:
        return await digest_status(store, org, settings)

    def add(app: web.Application) -> None:
        config_routes.add_status_section(app, "expenses", expenses)
        config_routes.add_status_section(app, "notifications", notifications)

    return add


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
