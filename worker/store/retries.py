"""The ``scheduled_retries`` table: every event the consumer put on the retry ladder (a later
attempt or a parked message), until it comes back to the exports queue.

The ladder relies on the broker moving an expired message from a retry queue back to the
exports queue; a RabbitMQ cluster can lose it there when nodes stop (README, "Known gap",
``python -m tests.chaos.dlx_loss``). With this record the consumer can publish such an event
again itself (:mod:`worker.messaging.retry_watch`). Writes go through a group commit: a flood
of parked messages costs a few transactions, not one per message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    select,
)

from worker.store.group_commit import GroupCommit
from worker.store.migrations import UtcDateTime, metadata

if TYPE_CHECKING:
    from worker.store.engine import Store

EVENT_ID_MAX = 200
QUEUE_MAX = 255

scheduled_retries = Table(
    "scheduled_retries",
    metadata,
    Column("event_id", String(EVENT_ID_MAX), primary_key=True),
    Column("org_id", String(100), nullable=False),
    Column("queue", String(QUEUE_MAX), nullable=False),  # the retry queue it waits in
    Column("step_s", Float, nullable=False),  # that queue's TTL
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),  # JSON: the headers it was published with
    Column("due_at", UtcDateTime, nullable=False),  # when the broker should give it back
    Column("scheduled_at", UtcDateTime, nullable=False),
)


@dataclass(frozen=True)
class ScheduledRetry:
    """One event waiting on the ladder, as it was published there."""

    event_id: str
    org_id: str
    queue: str
    step_s: float
    body: bytes
    headers: dict[str, Any]
    due_at: datetime
    scheduled_at: datetime


def _key(params: Mapping[str, Any]) -> tuple[str, ...]:
    return (str(params.get("event_id", params.get("k_event", ""))),)


class ScheduledRetries:
    """Record, clear, list and take the events waiting on the retry ladder."""

    table = scheduled_retries

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writes = GroupCommit(store, _key)
        t = self.table
        values: dict[str, Any] = {c.name: bindparam(c.name) for c in t.columns}
        self._record = store.upsert(
            t, values, ["event_id"], [c.name for c in t.columns if c.name != "event_id"]
        )
        self._clear = delete(t).where(t.c.event_id == bindparam("k_event"))
        self._take = delete(t).where(
            (t.c.event_id == bindparam("k_event")) & (t.c.due_at == bindparam("k_due"))
        )

    async def record(self, item: ScheduledRetry) -> None:
        """Remember ``item`` (the newest scheduling of an event replaces an older one)."""
        params = {
            "event_id": item.event_id[:EVENT_ID_MAX],
            "org_id": item.org_id[:100],
            "queue": item.queue[:QUEUE_MAX],
            "step_s": item.step_s,
            "body": item.body,
            "headers": json.dumps(item.headers, default=str, separators=(",", ":")),
            "due_at": item.due_at,
            "scheduled_at": item.scheduled_at,
        }
        await self._writes.run(self._record, params)

    async def clear(self, event_id: str) -> None:
        """The event came back (or never left): forget it."""
        await self._writes.run(self._clear, {"k_event": event_id[:EVENT_ID_MAX]})

    async def take(self, item: ScheduledRetry) -> bool:
        """Remove ``item`` unless it changed meanwhile (scheduled again, or back and cleared):
        True when this caller took it and should publish it again."""
        params = {"k_event": item.event_id[:EVENT_ID_MAX], "k_due": item.due_at}
        return bool(await self._writes.run(self._take, params))

    async def overdue(self, now: datetime, limit: int = 500) -> list[ScheduledRetry]:
        """Events that should have come back before ``now``, the longest overdue first."""
        t = self.table
        query = select(t).where(t.c.due_at < now).order_by(t.c.due_at).limit(limit)
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ScheduledRetry(**{**row._asdict(), "headers": json.loads(row.headers)}) for row in rows
        ]

    async def count(self) -> int:
        """Events waiting on the ladder now."""
        async with self._store.read() as conn:
            found = (await conn.execute(select(func.count()).select_from(self.table))).scalar()
        return int(found or 0)
