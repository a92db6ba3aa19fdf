"""Small broker helpers for tests: publish like Moment does, read queues, wait for counts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aio_pika

from worker.config.settings import Settings


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


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async or sync predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def wait_depth(settings: Settings, queue: str, n: int, timeout: float = 15.0) -> None:
    async def ok() -> bool:
        return await depth(settings, queue) >= n

    await wait_for(ok, timeout)
