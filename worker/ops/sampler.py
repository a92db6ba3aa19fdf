"""Samples the dead-letter queue depth into ``bcsync_dead_letter_depth`` (a ``Service``)."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from worker import metrics
from worker.config.settings import Settings
from worker.messaging.tls import amqp_tls

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 15.0


class DeadLetterSampler:
    """Every ``interval_s`` a passive declare of the dead-letter queue on its own channel.

    Counts ready messages: ones a ``dlq`` operation holds at that moment are not counted.
    Starting never waits for the broker; the loop connects (and reconnects) by itself, and a
    failed sample keeps the last value and logs a warning.
    """

    name = "dlq-sampler"

    def __init__(
        self,
        settings: Settings,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        connection: AbstractRobustConnection | None = None,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.queue = settings.queue("dead")
        self._connection = connection
        self._own_connection = connection is None
        self._channel: AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self.samples = 0  # successful samples so far

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def sample(self) -> int:
        """Take one sample now; returns the depth it set."""
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(
                self.settings.amqp_url.get_secret_value(),
                **amqp_tls(self.settings),
                client_properties={"connection_name": "bc-sync dlq sampler"},
            )
        if self._channel is None or self._channel.is_closed:
            # A passive declare of a missing queue closes the channel: open a fresh one.
            self._channel = await self._connection.channel()
        # Not channel.declare_queue(passive=True): a robust channel answers a repeated passive
        # declare from its cache, with the message count of the first call.
        underlay = await self._channel.get_underlay_channel()
        declared = await underlay.queue_declare(self.queue, passive=True)
        depth = int(declared.message_count or 0)
        metrics.DEAD_LETTER_DEPTH.set(depth)
        self.samples += 1
        return depth

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.sample()
                if failing:
                    log.info("dead-letter depth sampling recovered", queue=self.queue)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:  # one line per outage, not one per interval
                    log.warning(
                        "could not sample dead-letter depth",
                        queue=self.queue,
                        error=type(exc).__name__,
                    )
                failing = True
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._channel is not None and not self._channel.is_closed:
            with suppress(Exception):
                await self._channel.close()
        if self._own_connection and self._connection is not None:
            with suppress(Exception):
                await self._connection.close()
