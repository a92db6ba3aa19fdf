"""Readiness means consuming; the dead-letter depth gauge follows the queue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import factories as f
from tests.support.amqp import apply_topology, drop_topology, publish
from tests.support.dead_letters import CREATED, Scripted, Spec, make_dead_letters
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_for
from worker import metrics
from worker.api.app import ApiContext, ApiServer, create_app
from worker.config.settings import Settings
from worker.messaging.consumer import Consumer
from worker.ops import dlq
from worker.ops.health import consumers_check, readiness_checks, store_check
from worker.ops.sampler import DeadLetterSampler


async def cancel_consumers_behind_its_back(consumer: Consumer) -> None:
    """Cancel the consumer's registration on its own channel, leaving connection and channel
    open: what a reconnect that failed to re-consume looks like from the outside."""
    channels = consumer.connection.transport.connection.channels  # type: ignore[union-attr]
    for channel in list(channels.values()):
        for tag in list(getattr(channel, "consumers", {})):
            await channel.basic_cancel(tag)


def sqlite_ping(tmp_path: Path) -> Any:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")

    async def ping() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return ping


@pytest.fixture
async def proxied(amqp_url: str, tmp_path: Path) -> AsyncIterator[tuple[Settings, TcpProxy]]:
    """Settings whose broker connection runs through a proxy the test can cut."""
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    netloc = parts.netloc.rsplit("@", 1)
    creds = netloc[0] + "@" if len(netloc) == 2 else ""
    url = parts._replace(netloc=f"{creds}127.0.0.1:{proxy.port}").geturl()
    settings = make_settings(tmp_path, amqp_url=url, api_token=SecretStr("tok-health-1234"))
    try:
        yield settings, proxy
    finally:
        await proxy.stop()
        await drop_topology(make_settings(tmp_path, amqp_url=amqp_url, **_same(settings)))


def _same(settings: Settings) -> dict[str, Any]:
    return {"queue_prefix": settings.queue_prefix, "exchange": settings.exchange}


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as resp:
        return resp.status, await resp.json()


async def test_readyz_goes_unready_without_consumers_and_back_after_reconnect(
    proxied: tuple[Settings, TcpProxy], tmp_path: Path
) -> None:
    settings, proxy = proxied
    handler = Scripted()
    consumer = Consumer(settings, handler.registry())
    await consumer.start()
    ctx = ApiContext(
        settings,
        readiness=readiness_checks(consumers=[consumer], store_ping=sqlite_ping(tmp_path)),
    )
    server = ApiServer(create_app(ctx), "127.0.0.1", 0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    queue = settings.queue("exports")
    try:
        status, body = await readyz(url)
        assert status == 200, body
        assert body["checks"]["broker"]["detail"][queue]["broker_consumers"] == 1
        assert body["checks"]["store"] == {"ok": True, "detail": "reachable"}
        assert body["checks"]["bc"]["ok"] is True

        await cancel_consumers_behind_its_back(consumer)
        assert consumer.consuming  # it still believes so: readiness must not
        status, body = await readyz(url)
        assert status == 503
        assert body["checks"]["broker"]["ok"] is False
        assert body["checks"]["broker"]["detail"][queue]["broker_consumers"] == 0
        assert await consumer.broker_consumer_count() == 0
        assert REGISTRY.get_sample_value("bcsync_consumers", {"queue": queue}) == 0

        proxy.cut()  # the robust connection reconnects and restores the consumer

        async def ready() -> bool:
            return (await readyz(url))[0] == 200

        await wait_for(ready, timeout=30)
        assert await consumer.broker_consumer_count() == 1
        assert REGISTRY.get_sample_value("bcsync_consumers", {"queue": queue}) == 1
        await publish(settings, f.customer_event("8", id_="ev-8"), CREATED)
        await wait_for(lambda: handler.done == ["ev-8"], timeout=15)
    finally:
        await server.stop()
        await consumer.stop(grace=0)


async def test_readiness_is_per_process_even_when_another_replica_consumes(
    settings: Settings,
) -> None:
    one = Consumer(settings, Scripted().registry())
    two = Consumer(settings, Scripted().registry())
    await one.start()
    await two.start()
    queue = settings.queue("exports")
    try:
        await cancel_consumers_behind_its_back(one)
        ok, detail = await consumers_check([one])()
        assert not ok
        # The broker still sees a consumer (the other replica's): not enough for readiness.
        assert detail[queue]["broker_consumers"] == 1
        assert detail[queue]["client_consumers"] == 0
        ok, detail = await consumers_check([two])()
        assert ok, detail
    finally:
        await one.stop(grace=0)
        await two.stop(grace=0)


async def test_stopped_consumer_is_unready(settings: Settings) -> None:
    consumer = Consumer(settings, Scripted().registry())
    await consumer.start()
    check = consumers_check([consumer])
    assert (await check())[0]
    await consumer.stop(grace=0)
    ok, detail = await check()
    assert not ok
    assert detail[settings.queue("exports")]["consuming"] is False


async def test_store_check_says_unreachable_without_leaking_the_dsn(tmp_path: Path) -> None:
    assert await store_check(sqlite_ping(tmp_path))() == (True, "reachable")
    engine = create_async_engine("postgresql+asyncpg://postgres:pw-9x7y@127.0.0.1:1/test")

    async def ping() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    ok, detail = await store_check(ping)()
    assert not ok
    assert detail.startswith("unreachable")
    assert "pw-9x7y" not in detail and "127.0.0.1" not in detail


async def test_last_bc_success_is_shown_but_never_makes_unready() -> None:
    previous = REGISTRY.get_sample_value("bcsync_bc_last_success_timestamp_seconds") or 0.0
    try:
        metrics.BC_LAST_SUCCESS.set(0)
        check = readiness_checks()["bc"]
        assert await check() == (True, {"last_success": None})
        metrics.BC_LAST_SUCCESS.set(time.time() - 120)
        ok, detail = await check()
        assert ok
        assert detail["last_success"].endswith("Z")
        assert 119 <= detail["age_s"] <= 600
    finally:
        metrics.BC_LAST_SUCCESS.set(previous)


async def test_dead_letter_depth_gauge_follows_the_queue(settings: Settings) -> None:
    sampler = DeadLetterSampler(settings, interval_s=0.05)
    await sampler.start()  # before the queue exists: it keeps trying

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("bcsync_dead_letter_depth")

    try:
        await apply_topology(settings)
        await wait_for(lambda: sampler.samples > 0 and gauge() == 0)
        await make_dead_letters(settings, [Spec("1"), Spec("2"), Spec("3")])
        await wait_for(lambda: gauge() == 3)
        await dlq.purge(settings, dlq.Filters(limit=2), actor="test", archive=None)
        await wait_for(lambda: gauge() == 1)
    finally:
        await sampler.stop()
