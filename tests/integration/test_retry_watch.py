"""An event the broker drops on the retry ladder is not lost: the consumer recorded it before
it put it there, and the retry watch publishes it again once it cannot be on its way back
(issue 22: RabbitMQ lost such messages when cluster nodes stopped). One that is still
waiting is left alone, and one that came back is forgotten. Real broker, SQLite and
PostgreSQL; the watch's clock is passed in instead of waited for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY

from tests.support import factories as f
from tests.support.amqp import depth, drop_topology, publish, wait_depth
from tests.support.settings import make_settings
from tests.support.wait import wait_for
from worker.errors import Transient
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.messaging.consumer import Consumer
from worker.messaging.retry_watch import RetryWatch
from worker.messaging.topology import Topology
from worker.store import Leases, ScheduledRetries, Store, utcnow

CREATED = "moment.customer.created"


class Flaky:
    """Fails each customer's first attempt (BC answered 503), then succeeds."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.done: list[str] = []

    async def __call__(self, event: Event[Any]) -> Outcome:
        number = event.data.customer.number
        self.calls[number] = self.calls.get(number, 0) + 1
        if self.calls[number] == 1:
            raise Transient("BC-UNAVAILABLE", "503 from BC")
        self.done.append(number)
        return Outcome.ok()


def recovered() -> float:
    value = REGISTRY.get_sample_value("bcsync_retries_recovered_total", {"type": CREATED})
    return value or 0.0


@pytest.fixture
async def running(
    amqp_url: str, tmp_path: Path, store: Store
) -> AsyncIterator[tuple[Consumer, RetryWatch, Flaky]]:
    # A 30 s step: the message stays on the ladder while the test looks at it.
    settings = make_settings(tmp_path, amqp_url=amqp_url, retry_delays=(30, 60))
    watch = RetryWatch(
        ScheduledRetries(store),
        Leases(store),
        Topology.from_settings(settings),
        grace_s=900,
        interval_s=3600,  # rounds are run by the test, with its own clock
    )
    handler = Flaky()
    consumer = Consumer(settings, {CREATED: handler}, watch=watch)
    await consumer.start()
    try:
        yield consumer, watch, handler
    finally:
        await consumer.stop()
        await drop_topology(settings)


async def test_an_event_dropped_on_the_ladder_is_published_again(
    running: tuple[Consumer, RetryWatch, Flaky],
) -> None:
    consumer, watch, handler = running
    settings, topo = consumer.settings, consumer.topology
    retry_queue, before = await on_the_ladder(consumer, "5")
    [item] = await watch.retries.overdue(utcnow() + timedelta(days=1))
    assert (item.queue, item.step_s, item.headers["x-bc-attempt"]) == (retry_queue, 30.0, 2)
    assert await watch.sweep() == 0  # not due yet

    # The broker drops it (as the cluster did): nothing would ever bring it back.
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(retry_queue, ensure=False)
        await queue.purge()
    assert await depth(settings, retry_queue) == 0

    assert await watch.sweep(now=utcnow() + timedelta(seconds=40)) == 1
    await wait_for(lambda: handler.done == ["5"])
    assert handler.calls["5"] == 2  # the second attempt, once
    assert recovered() == before + 1
    await wait_for(lambda: _count(watch, 0))  # delivered again: forgotten
    assert await depth(settings, topo.dead.name) == 0


async def test_an_event_still_waiting_is_left_alone(
    running: tuple[Consumer, RetryWatch, Flaky],
) -> None:
    consumer, watch, handler = running
    await on_the_ladder(consumer, "6")
    before = recovered()
    # Past its time but still in its retry queue (a broker running late): not published again.
    assert await watch.sweep(now=utcnow() + timedelta(seconds=40)) == 0
    assert await watch.retries.count() == 1
    assert recovered() == before
    assert handler.calls == {"6": 1}


async def on_the_ladder(consumer: Consumer, number: str) -> tuple[str, float]:
    """Customer ``number``'s event failed once and waits in the 30 s retry queue: that queue,
    and the recovered count before."""
    retry_queue = consumer.topology.retry_queue(30)
    before = recovered()
    await publish(consumer.settings, f.customer_event(number), CREATED)
    await wait_depth(consumer.settings, retry_queue, 1)
    return retry_queue, before


async def _count(watch: RetryWatch, n: int) -> bool:
    return await watch.retries.count() == n
