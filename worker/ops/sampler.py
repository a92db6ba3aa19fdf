"""Samples the dead-letter queue depth into ``bcsync_dead_letter_depth`` (a ``Service``), and
keeps the per-organization dead-letter counts the status route shows."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import suppress

import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from worker import metrics
from worker.config.settings import Settings
from worker.messaging.connection import connect_robust
from worker.ops.dlq import DeadLetters

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 15.0
# How old the dead-letter counts of the status route may be: one queue scan serves every
# status call in that time.
COUNTS_MAX_AGE_S = 15.0


class DeadLetterCounts:
    """Dead letters per organization and error code, for the status route: read from a scan
    of the queue at most ``max_age_s`` old, so one scan serves every status call in that time
    instead of one scan per call (one scan at a time; callers meanwhile wait for it)."""

    def __init__(self, dead_letters: DeadLetters, *, max_age_s: float = COUNTS_MAX_AGE_S):
        self.dead_letters = dead_letters
        self.max_age_s = max_age_s
        self.scans = 0  # full scans so far
        self._counts: dict[str, Counter[str]] = {}
        self._at: float | None = None
        self._lock = asyncio.Lock()

    async def for_org(self, org: str) -> dict[str, int]:
        """The organization's dead letters per error code."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._scan()
        return dict(self._counts.get(org, Counter()))

    def _fresh(self) -> bool:
        return self._at is not None and time.monotonic() - self._at < self.max_age_s

    async def _scan(self) -> None:
        started = time.monotonic()
        counts: dict[str, Counter[str]] = {}
        for letter in await self.dead_letters.list_letters():
            counts.setdefault(letter.org or "", Counter())[letter.code or "(none)"] += 1
        self._counts, self._at = counts, started
        self.scans += 1


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
        dead_letters: DeadLetters | None = None,
        counts_max_age_s: float = COUNTS_MAX_AGE_S,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.queue = settings.queue("dead")
        self._connection = connection
        self._own_connection = connection is None
        self._channel: AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self.samples = 0  # successful samples so far
        self.counts = DeadLetterCounts(
            dead_letters or DeadLetters(settings, connection), max_age_s=counts_max_age_s
        )

    @property
    def connection(self) -> AbstractRobustConnection | None:
        """The broker connection it samples on (the runtime's; its own when none was given)."""
        return self._connection

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def sample(self) -> int:
        """Take one sample now; returns the depth it set."""
        if self._connection is None:
            self._connection = await connect_robust(self.settings, name="bc-sync dlq sampler")
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
                    log.info("sampler.recovered", queue=self.queue)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:  # one line per outage, not one per interval
                    log.warning(
                        "sampler.failed",
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
