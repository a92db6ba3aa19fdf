"""Retention: what the store keeps, pruned by age in small batches (the ``notify`` role).

Once per ``RUN_EVERY_S`` one process (a lease ``retention``) deletes:

- sync-ledger history steps older than ``BC_SYNC_RETENTION_STEPS_DAYS`` (90), and all but the
  newest ``BC_SYNC_RETENTION_STEPS_PER_OBJECT`` (50) steps of any object;
- sync-ledger objects unchanged for ``BC_SYNC_RETENTION_STATES_DAYS`` (400; never one that is
  pending, retrying or claimed), with their steps;
- ``published_expenses`` rows older than ``BC_SYNC_RETENTION_EXPENSES_DAYS`` (400: older
  expense lines are behind every watermark; only a from-date moved back further than that
  could publish one again, with the same event id);
- notification items of digests sent more than ``BC_SYNC_RETENTION_NOTIFICATIONS_DAYS`` (30)
  ago, and failures never resolved after ``BC_SYNC_RETENTION_OPEN_FAILURES_DAYS`` (90).

Never blocking the hot path: candidates are selected in read transactions (no write lock
while scanning), each delete is one short write transaction of at most ``BATCH`` rows, with a
pause between batches, and a run stops after ``MAX_BATCHES`` per table (the next run goes on).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, select, tuple_

from worker import metrics
from worker.config.settings import Settings
from worker.notify.store import NotificationRepository
from worker.runtime import cancel_and_wait
from worker.store import Store
from worker.store.leases import Leases
from worker.sync.expenses import published_expenses
from worker.sync.ledger import LedgerRepository

log = structlog.get_logger(__name__)

RUN_EVERY_S = 3600.0
FIRST_RUN_S = 60.0
BATCH = 500
MAX_BATCHES = 200  # per table and run: at most 100,000 rows
PAUSE_S = 0.05
LEASE = "retention"
LEASE_TTL_S = 1800.0
DAY_S = 86400.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Pruned:
    """Rows deleted by one run, per table."""

    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, count: int) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + count
            metrics.child(metrics.PRUNED, table).inc(count)


class Retention:
    """Prunes the store by age; ``run_once(now)`` is one full pass (time injectable)."""

    name = "retention"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        leases: Leases,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch: int = BATCH,
        pause_s: float = PAUSE_S,
    ) -> None:
        self.settings = settings
        self.store = store
        self.leases = leases
        self.ledger = LedgerRepository(store)
        self.notifications = NotificationRepository(store)
        self._clock = clock
        self._batch = batch
        self._pause_s = pause_s
        self._task: asyncio.Task[None] | None = None
        self.owner = f"retention-{uuid.uuid4().hex[:12]}"

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(FIRST_RUN_S)
        while True:
            try:
                if await self.leases.acquire(LEASE, self.owner, LEASE_TTL_S):
                    try:
                        await self.run_once()
                    finally:
                        await self.leases.release(LEASE, self.owner)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention.run_failed")
            await asyncio.sleep(RUN_EVERY_S)

    async def _batches(self, one: Callable[[], Awaitable[int]]) -> int:
        total = 0
        for _ in range(MAX_BATCHES):
            count = await one()
            total += count
            if count < self._batch:
                break
            await asyncio.sleep(self._pause_s)
        return total

    async def run_once(self, now: datetime | None = None) -> Pruned:
        now = now or self._clock()
        s = self.settings
        out = Pruned()
        steps_before = now - timedelta(days=s.retention_steps_days)
        out.add(
            "sync_ledger_steps",
            await self._batches(
                lambda: self.ledger.prune_steps(before=steps_before, batch=self._batch)
            ),
        )
        out.add("sync_ledger_steps", await self._trim_crowded())
        states_before = now - timedelta(days=s.retention_states_days)
        out.add(
            "sync_ledger",
            await self._batches(
                lambda: self.ledger.prune_objects(before=states_before, batch=self._batch)
            ),
        )
        expenses_before = now - timedelta(days=s.retention_expenses_days)
        out.add(
            "published_expenses",
            await self._batches(lambda: self._prune_expenses(expenses_before)),
        )
        out.add(
            "notifications",
            await self.notifications.purge(
                keep_s=s.retention_notifications_days * DAY_S,
                keep_open_s=s.retention_open_failures_days * DAY_S,
                now=now,
            ),
        )
        if out.rows:
            log.info("retention.pruned", **out.rows)
        return out

    async def _trim_crowded(self) -> int:
        keep = self.settings.retention_steps_per_object
        total = 0
        for _ in range(MAX_BATCHES):
            crowded = await self.ledger.crowded_objects(keep=keep, batch=self._batch)
            for org_id, object_type, moment_id in crowded:
                total += await self.ledger.trim_object(org_id, object_type, moment_id, keep=keep)
                await asyncio.sleep(0)
            if len(crowded) < self._batch:
                break
            await asyncio.sleep(self._pause_s)
        return total

    async def _prune_expenses(self, before: datetime) -> int:
        t = published_expenses
        async with self.store.read() as conn:
            keys = [
                (r.org_id, r.line_id)
                for r in await conn.execute(
                    select(t.c.org_id, t.c.line_id)
                    .where(t.c.published_at < before)
                    .limit(self._batch)
                )
            ]
        if not keys:
            return 0
        async with self.store.write() as conn:
            result = await conn.execute(
                delete(t).where(
                    tuple_(t.c.org_id, t.c.line_id).in_(keys), t.c.published_at < before
                )
            )
        return int(result.rowcount or 0)
