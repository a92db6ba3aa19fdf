"""Broker helpers: publish like Moment does, read and drain queues, wait for counts, and drop
what a test declared."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika

from tests.support.wait import wait_for
from worker.config.settings import Settings
from worker.messaging.topology import Topology


@dataclass
class Got:
    body: bytes
    headers: dict[str, Any]
    routing_key: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def publish(
    settings: Settings,
    body: bytes,
    routing_key: str,
    *,
    content_type: str = "application/cloudevents+json",
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish to the events exchange with a confirm, as Moment does."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type=content_type,
                headers=headers or {},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )


async def depth(settings: Settings, queue: str) -> int:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)


async def drain(settings: Settings, queue: str) -> list[Got]:
    """Take every message currently in ``queue`` (acked: they leave the queue)."""
    out: list[Got] = []
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=False)
        while True:
            msg = await q.get(fail=False, no_ack=True)
            if msg is None:
                return out
            out.append(Got(msg.body, dict(msg.headers or {}), msg.routing_key))


async def wait_depth(settings: Settings, queue: str, n: int, timeout: float = 15.0) -> None:
    async def ok() -> bool:
        return await depth(settings, queue) >= n

    await wait_for(ok, timeout)


async def depth_or_zero(settings: Settings, queue: str) -> int:
    try:
        return await depth(settings, queue)
    except Exception:
        return 0  # not declared yet


async def publish_many(settings: Settings, items: list[tuple[str, bytes]]) -> None:
    """Publish ``(routing_key, body)`` to the events exchange in order, each confirmed."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        for routing_key, body in items:
            await exchange.publish(
                aio_pika.Message(
                    body,
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=routing_key,
            )


async def apply_topology(settings: Settings) -> Topology:
    topology = Topology.from_settings(settings)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        await topology.apply(await connection.channel())
    return topology


async def drop_topology(s: Settings) -> None:
    """Delete every queue and the exchange a test declared."""
    topo = Topology.from_settings(s)
    connection = await aio_pika.connect(s.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        for spec in topo.queues:
            # quorum queues refuse if_unused/if_empty (stack-notes §3): pass False explicitly
            await channel.queue_delete(spec.name, if_unused=False, if_empty=False)
        await channel.exchange_delete(topo.exchange)


@asynccontextmanager
async def bound_queue(settings: Settings, suffix: str, keys: Iterable[str]) -> AsyncIterator[str]:
    """A queue of the test bound to ``keys`` on the events exchange (what Moment's own queue
    would get); its name, and it is deleted afterwards."""
    name = settings.queue(suffix)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=False, auto_delete=False)
        for key in keys:
            await queue.bind(settings.exchange, key)
        yield name
        await channel.queue_delete(name)
