"""The retry watch: no event is lost on the retry ladder, even when the broker drops it.

A later attempt (or a parked message) waits in a ``retry.<n>s`` queue until its TTL expires and
the broker dead-letters it back to the exports queue. In a RabbitMQ cluster that move can lose
messages when nodes stop (README, "Retries survive a cluster node loss"; ``python -m
tests.chaos.dlx_loss`` shows it without bc-sync). So the consumer records every event it puts
on the ladder (``scheduled_retries``) before it publishes it there, and forgets it when the
event is delivered again. Every ``BC_SYNC_RETRY_WATCH_INTERVAL_S`` one consumer (a lease) looks
for records past their time and publishes those events to the exports queue itself, with their
headers as they were (same attempt), when they cannot be on their way any more. Never while the
exports queue has ready messages: one that came back may be waiting in that backlog (the watch
acts once it is worked off). Otherwise:

- :data:`SETTLE_S` after they were due when their retry queue is empty too; or
- the queue's whole wait plus ``BC_SYNC_RETRY_WATCH_GRACE_S`` after they were due when it is
  not (a message with a longer wait at its head holds the others back, never longer).

Publishing one again that was only late makes a duplicate, which the handlers take as they
take any redelivery (newest change wins, exported documents are found, not made twice). When
the store is down the event still goes on the ladder, unwatched (counted).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from aio_pika.abc import AbstractRobustConnection

from worker import metrics
from worker.messaging import headers as H
from worker.messaging.publisher import Publisher, make_message
from worker.messaging.topology import Topology
from worker.runtime import cancel_and_wait
from worker.store import Leases, ScheduledRetries, ScheduledRetry, utcnow

log = structlog.get_logger(__name__)

# A message back on time is cleared within this of its due time (delivery, group commit).
SETTLE_S = 5.0
LEASE = "retry-watch"
# Records published again in one round at most (the longest overdue first).
ROUND_LIMIT = 500
# The consumer waits this long at most for a record or a clear: a store that does not answer
# (a partition, not a refusal) must not hold the ladder up; the event goes on unwatched.
STORE_WAIT_S = 5.0


def is_lost(
    item: ScheduledRetry, now: datetime, depths: Mapping[str, int], exports: str, grace_s: float
) -> bool:
    """Whether ``item``'s message can no longer be on its way back (see the module text).
    ``depths``: ready messages per queue (a queue whose depth is unknown counts as busy)."""
    overdue = (now - item.due_at).total_seconds()
    if overdue < SETTLE_S or depths.get(exports, 1) != 0:
        return False  # just due, or a backlog it may be waiting in
    if depths.get(item.queue, 1) == 0:
        return True  # nothing is left where it could be
    # Still messages in its retry queue: one with a longer wait ahead of it holds it back, but
    # never longer than the queue's own wait.
    return overdue > item.step_s + grace_s


def recorded_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers worth keeping: ours and the sender's, not the broker's own."""
    return {k: v for k, v in headers.items() if k not in H.BROKER_HEADERS}


@dataclass(eq=False)
class RetryWatch:
    """Records what the consumer puts on the ladder and publishes again what never came back."""

    retries: ScheduledRetries
    leases: Leases
    topology: Topology
    _: KW_ONLY
    grace_s: float
    interval_s: float
    owner: str = field(init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _connection: AbstractRobustConnection | None = field(default=None, init=False)
    _publisher: Publisher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    # --- the consumer's side -----------------------------------------------------------------

    async def scheduled(
        self,
        *,
        event_id: str,
        org: str,
        queue: str,
        body: bytes,
        headers: Mapping[str, Any],
        wait_s: float,
    ) -> None:
        """Record an event about to be published to ``queue`` (back after ``wait_s``); when
        the store fails, the event goes on the ladder unwatched (counted)."""
        now = utcnow()
        item = ScheduledRetry(
            event_id=event_id,
            org_id=org,
            queue=queue,
            step_s=self.topology.delay_of(queue),
            body=body,
            headers=recorded_headers(headers),
            due_at=now + timedelta(seconds=wait_s),
            scheduled_at=now,
        )
        try:
            async with asyncio.timeout(STORE_WAIT_S):
                await self.retries.record(item)
        except Exception as exc:
            metrics.RETRIES_UNWATCHED.inc()
            log.warning("retry_watch.record_failed", error=type(exc).__name__)

    async def back(self, event_id: str) -> None:
        """The event was delivered again (or was never published to the ladder): forget it."""
        try:
            async with asyncio.timeout(STORE_WAIT_S):
                await self.retries.clear(event_id)
        except Exception as exc:
            # Left behind, it is published again once overdue: a duplicate, never a loss.
            log.warning("retry_watch.clear_failed", error=type(exc).__name__)

    # --- the sweeper -------------------------------------------------------------------------

    async def start(self, connection: AbstractRobustConnection, publisher: Publisher) -> None:
        self._connection = connection
        self._publisher = publisher
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self.leases.release(LEASE, self.owner)
        except Exception:
            log.debug("retry_watch.release_failed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if await self.leases.acquire(LEASE, self.owner, self.interval_s * 3):
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("retry_watch.round_failed", error=type(exc).__name__)

    async def sweep(self, now: datetime | None = None) -> int:
        """One round: publish again what is lost; returns how many."""
        now = now or utcnow()
        candidates = await self.retries.overdue(
            now - timedelta(seconds=SETTLE_S), limit=ROUND_LIMIT
        )
        if not candidates:
            return 0
        assert self._publisher is not None, "retry watch not started"
        publisher = self._publisher
        exports = self.topology.exports.name
        depths = await self._depths({exports, *(c.queue for c in candidates)})
        recovered = 0
        for item in candidates:
            if not is_lost(item, now, depths, exports, self.grace_s):
                continue
            if not await self.retries.take(item):
                continue  # came back, or scheduled again, meanwhile
            headers = {
                **item.headers,
                H.RECOVERED: (H.integer(item.headers.get(H.RECOVERED)) or 0) + 1,
            }
            message = make_message(
                item.body,
                message_id=item.event_id,
                headers=headers,
                content_type="application/cloudevents+json",
            )
            try:
                await publisher.to_queue(exports, message)
            except Exception:
                await self.retries.record(item)  # the next round tries again
                raise
            recovered += 1
            event_type = str(item.headers.get(H.ROUTING_KEY) or "unknown")
            metrics.child(metrics.RETRIES_RECOVERED, event_type).inc()
            log.warning(
                "retry_watch.recovered",
                event_id=item.event_id,
                org=item.org_id,
                queue=item.queue,
                overdue_s=round((now - item.due_at).total_seconds(), 1),
            )
        return recovered

    async def _depths(self, queues: Iterable[str]) -> dict[str, int]:
        """Ready messages per queue (passive declares; a queue that fails is left out)."""
        assert self._connection is not None, "retry watch not started"
        out: dict[str, int] = {}
        for name in queues:
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                out[name] = int(queue.declaration_result.message_count or 0)
            except Exception:
                log.debug("retry_watch.depth_unknown", queue=name)
            finally:
                if not channel.is_closed:
                    await channel.close()
        return out
