"""Dead-letter operations that run in the background with their state in the store: replay,
archive and restore of a group (or of one dead letter), for the console.

- An operation has an id and a row in ``dlq_operations``; any replica answers its progress.
- One at a time per group: ``active_key`` (unique) is set while it is queued or running.
- The process that accepted it runs it (operations of a process take turns, and the
  broker-side lock of :mod:`worker.ops.dlq` keeps replicas apart), through the same
  :class:`~worker.ops.dlq.DeadLetters` path as ``bc-sync dlq replay``: publish with a confirm,
  then ack. Replays are throttled (``rate`` messages per second) so a large group reaches BC
  in an even stream, and progress reaches the store in batches (every :data:`FLUSH_S`).
- A process that stops or dies mid-way leaves its operation as ``failed`` ("interrupted"), never
  resumed on its own: what it moved is gone from the queue, the rest stays there, and a person
  presses the button again. Resuming by itself would repeat the one unsafe moment (published,
  not yet acked) without anyone seeing it.

:class:`IndexReconciler` keeps the dead-letter index equal to the queues (see
:mod:`worker.ops.dlq.index`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import structlog
from sqlalchemy import Column, Integer, String, Table, Text, or_, select, update
from sqlalchemy.exc import IntegrityError

from worker.messaging.topology import Topology
from worker.ops.dlq.index import NONE_KEY, DeadLetterIndex, Query
from worker.ops.dlq.model import DeadLetter, DlqBusy, DlqError, Filters
from worker.ops.dlq.operations import DeadLetters
from worker.store import JsonType, Leases, UtcDateTime, metadata, utcnow

if TYPE_CHECKING:
    from worker.store import Store

log = structlog.get_logger(__name__)

Kind = Literal["replay", "archive", "restore"]
KINDS: tuple[str, ...] = ("replay", "archive", "restore")
GROUP_KINDS = ("code", "org", "type", "id")
# How often a running operation writes its progress and heartbeat.
FLUSH_S = 0.5
# An operation whose heartbeat is older than this belongs to a process that is gone.
STALE_S = 30.0
# Default replay throttle (messages per second): BC online allows 6,000 requests per 5 minutes
# per tenant, and an invoice takes up to 5; this keeps one large replay from filling that.
REPLAY_RATE = 50.0
# How long a queued operation waits for another dead-letter operation to finish.
RUN_LOCK_WAIT_S = 600.0
# How long stopping waits for a reconcile to let go.
STOP_WAIT_S = 5.0
# Dead letters of a "(none)" group (no organization or type) are replayed by id, at most this
# many per operation.
NONE_GROUP_MAX = 10_000

dlq_operations = Table(
    "dlq_operations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("group_by", String(10), nullable=False),
    Column("group_key", String(200), nullable=False),
    Column("filters", JsonType, nullable=False),
    Column("reason", Text),
    Column("actor", String(200), nullable=False),
    Column("state", String(20), nullable=False),  # queued | running | done | failed
    Column("active_key", String(250), unique=True),
    Column("expected", Integer, nullable=False, default=0),
    Column("scanned", Integer, nullable=False, default=0),
    Column("matched", Integer),
    Column("done", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("owner", String(100)),
    Column("heartbeat_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
)


class OperationBusy(Exception):
    """The group already has an operation queued or running (``existing`` is its id)."""

    def __init__(self, existing: str | None) -> None:
        super().__init__("an operation on this group is already queued or running")
        self.existing = existing


@dataclass(frozen=True)
class Operation:
    id: str
    kind: str
    group_by: str
    group_key: str
    filters: dict[str, Any]
    reason: str | None
    actor: str
    state: str
    expected: int
    scanned: int
    matched: int | None
    done: int
    error: str | None
    owner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def total(self) -> int:
        """What it moves: the matches of its queue read, or what the index expected."""
        return self.matched if self.matched is not None else self.expected

    @property
    def percent(self) -> int:
        if not self.active and self.state == "done":
            return 100
        total = self.total
        return 0 if total <= 0 else min(100, round(100 * self.done / total))


def active_key(group_by: str, key: str) -> str:
    return f"{group_by}:{key}"[:250]


def literal(value: str) -> str:
    """A value that :class:`Filters` matches exactly even when it holds glob characters."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in value)


@dataclass
class _Progress:
    scanned: int = 0
    done: int = 0
    matched: int | None = None
    settled: list[DeadLetter] = field(default_factory=list)


class Operations:
    """Submits, runs and reports dead-letter operations (a ``Service`` of the api role)."""

    name = "dlq-operations"
    table = dlq_operations

    def __init__(
        self,
        store: Store,
        dead_letters: DeadLetters,
        index: DeadLetterIndex,
        *,
        rate: float | None = REPLAY_RATE,
        owner: str | None = None,
        flush_s: float = FLUSH_S,
        stale_s: float = STALE_S,
    ) -> None:
        self._store = store
        self.dead_letters = dead_letters
        self.index = index
        self.rate = rate
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.flush_s = flush_s
        self.stale_s = stale_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._turn = asyncio.Lock()  # one operation of this process at a time, in order

    # --- service ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.fail_stale()

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with suppress(asyncio.CancelledError, Exception):
                await task

    async def fail_stale(self) -> int:
        """Mark operations whose process is gone (heartbeat too old) as failed."""
        t = self.table
        cutoff = utcnow() - timedelta(seconds=self.stale_s)
        async with self._store.write() as conn:
            result = await conn.execute(
                update(t)
                .where(
                    t.c.state.in_(("queued", "running")),
                    or_(t.c.heartbeat_at.is_(None), t.c.heartbeat_at < cutoff),
                    or_(t.c.owner.is_(None), t.c.owner != self.owner),
                )
                .values(
                    state="failed",
                    active_key=None,
                    finished_at=utcnow(),
                    error="interrupted: the process running it stopped; what it moved is "
                    "out of the queue, the rest is still there (press the button again)",
                )
            )
        count = result.rowcount or 0
        if count:
            log.warning("dlq.operations_interrupted", count=count)
        return count

    # --- submitting and reading ------------------------------------------------------------

    async def submit(
        self,
        kind: Kind,
        group_by: str,
        key: str,
        *,
        actor: str,
        reason: str | None = None,
        expected: int = 0,
    ) -> Operation:
        """Record a new operation and start running it; :class:`OperationBusy` when the group
        already has one."""
        if kind not in KINDS:
            raise ValueError(f"unknown operation {kind!r}")
        if group_by not in GROUP_KINDS:
            raise ValueError(f"unknown group {group_by!r}")
        await self.fail_stale()
        now = utcnow()
        op_id = str(uuid.uuid4())
        values = {
            "id": op_id,
            "kind": kind,
            "group_by": group_by,
            "group_key": key[:200],
            "filters": {"group_by": group_by, "key": key},
            "reason": reason,
            "actor": actor[:200],
            "state": "queued",
            "active_key": active_key(group_by, key),
            "expected": expected,
            "scanned": 0,
            "done": 0,
            "owner": self.owner,
            "heartbeat_at": now,
            "created_at": now,
        }
        try:
            async with self._store.write() as conn:
                await conn.execute(self.table.insert().values(**values))
        except IntegrityError:
            existing = await self.active_for(group_by, key)
            raise OperationBusy(existing.id if existing else None) from None
        task = asyncio.create_task(self._run(op_id), name=f"dlq-{kind}-{op_id[:8]}")
        self._tasks[op_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(op_id, None))
        found = await self.get(op_id)
        assert found is not None
        return found

    async def get(self, op_id: str) -> Operation | None:
        t = self.table
        async with self._store.read() as conn:
            row = (await conn.execute(select(t).where(t.c.id == op_id))).first()
        return None if row is None else _operation(row._asdict())

    async def active_for(self, group_by: str, key: str) -> Operation | None:
        t = self.table
        async with self._store.read() as conn:
            row = (
                await conn.execute(select(t).where(t.c.active_key == active_key(group_by, key)))
            ).first()
        return None if row is None else _operation(row._asdict())

    async def active(self) -> list[Operation]:
        t = self.table
        async with self._store.read() as conn:
            rows = (await conn.execute(select(t).where(t.c.active_key.is_not(None)))).all()
        return [_operation(r._asdict()) for r in rows]

    async def recent(self, limit: int = 20) -> list[Operation]:
        t = self.table
        async with self._store.read() as conn:
            rows = (
                await conn.execute(select(t).order_by(t.c.created_at.desc()).limit(limit))
            ).all()
        return [_operation(r._asdict()) for r in rows]

    async def finished(self, op_id: str) -> Operation | None:
        """Wait until this process's run of the operation ended (tests, the demo)."""
        task = self._tasks.get(op_id)
        if task is not None:
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
        return await self.get(op_id)

    # --- running ---------------------------------------------------------------------------

    async def _write(self, op_id: str, **values: Any) -> None:
        t = self.table
        async with self._store.write() as conn:
            await conn.execute(update(t).where(t.c.id == op_id).values(**values))

    async def _filters(self, op: Operation) -> Filters:
        if op.group_by == "id":
            return Filters(ids=frozenset({op.group_key}))
        if op.group_key == NONE_KEY and op.group_by in ("org", "type"):
            # Filters cannot say "no organization": take the ids the index knows.
            query = Query(archived=op.kind == "restore").group(op.group_by, op.group_key)
            ids = await self.index.ids(query, limit=NONE_GROUP_MAX)
            return Filters(ids=frozenset(ids or ["-"]))
        value = literal(op.group_key)
        if op.group_by == "code":
            return Filters(code=value)
        if op.group_by == "org":
            return Filters(org=value)
        return Filters(type=value)

    async def _run(self, op_id: str) -> None:
        progress = _Progress()
        flusher: asyncio.Task[None] | None = None
        op = await self.get(op_id)
        if op is None:
            return
        started = utcnow()
        try:
            async with self._turn:
                await self._write(op_id, state="running", started_at=started, heartbeat_at=started)
                flusher = asyncio.create_task(self._flush_loop(op, progress, started))
                result_error = await self._execute(op, progress)
            flusher.cancel()
            with suppress(asyncio.CancelledError):
                await flusher
            await self._flush(op, progress, started)
            state = "done" if result_error is None else "failed"
            await self._write(
                op_id,
                state=state,
                error=result_error,
                active_key=None,
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        except asyncio.CancelledError:
            # The process is stopping: record how far it got, never leave it "running".
            if flusher is not None:
                flusher.cancel()
            with suppress(Exception):
                await self._flush(op, progress, started)
                await self._write(
                    op_id,
                    state="failed",
                    active_key=None,
                    finished_at=utcnow(),
                    error="interrupted: the process stopped; what it moved is out of the "
                    "queue, the rest is still there (press the button again)",
                )
            raise
        except Exception as exc:
            if flusher is not None:
                flusher.cancel()
            message = str(exc) if isinstance(exc, DlqError) else type(exc).__name__
            log.exception("dlq.operation_failed", operation=op_id, kind=op.kind)
            with suppress(Exception):
                await self._flush(op, progress, started)
                await self._write(
                    op_id, state="failed", active_key=None, finished_at=utcnow(), error=message
                )

    async def _execute(self, op: Operation, progress: _Progress) -> str | None:
        filters = await self._filters(op)

        def scanned(read: int, matched: int) -> None:
            progress.scanned = read

        def moved(done: int, total: int) -> None:
            progress.done, progress.matched = done, total

        def settled(letter: DeadLetter) -> None:
            progress.settled.append(letter)

        common: dict[str, Any] = {
            "actor": op.actor,
            "progress": moved,
            "settled": settled,
            "scanned": scanned,
            "wait": RUN_LOCK_WAIT_S,
        }
        if op.kind == "replay":
            result = await self.dead_letters.replay(filters, rate=self.rate, **common)
            progress.matched = result.matched
            return result.error
        if op.kind == "archive":
            moved_result = await self.dead_letters.archive(
                filters, reason=op.reason or "", **common
            )
        else:
            moved_result = await self.dead_letters.restore(filters, **common)
        progress.matched = moved_result.matched
        return moved_result.error

    async def _flush_loop(self, op: Operation, progress: _Progress, started: datetime) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self._flush(op, progress, started)
            except Exception as exc:
                log.warning("dlq.operation_flush_failed", operation=op.id, error=type(exc).__name__)

    async def _flush(self, op: Operation, progress: _Progress, started: datetime) -> None:
        """Write the progress and bring the index up to date with what was moved."""
        batch, progress.settled = progress.settled, []
        ids = [letter.id for letter in batch]
        try:
            if ids:
                if op.kind == "replay":
                    await self.index.forget(ids, indexed_before=started)
                elif op.kind == "archive":
                    await self.index.mark_archived(ids, by=op.actor, reason=op.reason or "")
                else:
                    await self.index.mark_active(ids)
        except Exception:
            progress.settled[:0] = batch  # try again at the next flush
            raise
        await self._write(
            op.id,
            scanned=progress.scanned,
            done=progress.done,
            matched=progress.matched,
            heartbeat_at=utcnow(),
        )


def _operation(values: dict[str, Any]) -> Operation:
    values.pop("active_key", None)
    filters = values.get("filters")
    if isinstance(filters, str):
        values["filters"] = json.loads(filters)
    return Operation(**values)


class IndexReconciler:
    """Keeps the dead-letter index equal to the queues (a ``Service`` of the api role).

    Every ``check_s`` it compares the queues' depths (a passive declare, cheap) with the
    index's counts; when they differ on two checks in a row (a dead letter being published
    and indexed is a moment apart), or every ``full_s`` anyway, it reads both queues under the
    dead-letter lock and rewrites what differs. One replica at a time (a lease).
    """

    name = "dlq-index"
    LEASE = "dlq-index-reconcile"

    def __init__(
        self,
        store: Store,
        dead_letters: DeadLetters,
        index: DeadLetterIndex,
        leases: Leases,
        *,
        check_s: float = 30.0,
        full_s: float = 6 * 3600.0,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.dead_letters = dead_letters
        self.index = index
        self.leases = leases
        self.check_s = check_s
        self.full_s = full_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._mismatches = 0
        self._last_full: float | None = None
        self.reconciles = 0
        topology = Topology.from_settings(dead_letters.settings)
        self._queues = (topology.dead.name, topology.archived.name)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # A read cancelled half way hands the messages back by closing its channel; never
            # let that hold up the process's shutdown.
            with suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._task, STOP_WAIT_S)

    async def depths(self) -> tuple[int, int]:
        """Messages in the dead-letter and archive queues (ready ones, as the broker says)."""
        connection = self.dead_letters.connection
        if connection is None:
            raise DlqError("no broker connection")
        channel = await connection.channel()
        try:
            underlay = await channel.get_underlay_channel()
            counts = []
            for name in self._queues:
                declared = await underlay.queue_declare(name, passive=True)
                counts.append(int(declared.message_count or 0))
            return counts[0], counts[1]
        finally:
            with suppress(Exception):
                await channel.close()

    async def check(self) -> bool:
        """One check; True when it reconciled."""
        due = self._last_full is None or self._clock() - self._last_full >= self.full_s
        if not due:
            depths = await self.depths()
            totals = await self.index.depths()
            if depths == totals:
                self._mismatches = 0
                return False
            self._mismatches += 1
            if self._mismatches < 2:
                return False
        await self.reconcile()
        return True

    async def reconcile(self) -> dict[str, int] | None:
        """Read both queues and make the index match (under a lease: one replica at a time)."""
        ttl = 900.0
        if not await self.leases.acquire(self.LEASE, self.owner, ttl):
            return None
        try:
            started = utcnow()
            dead, archived = await self.dead_letters.snapshot(self._queues, wait=RUN_LOCK_WAIT_S)
            changes = await self.index.reconcile(dead, archived, started=started)
            self._last_full = self._clock()
            self._mismatches = 0
            self.reconciles += 1
            if any(changes.values()):
                log.info("dlq.index_reconciled", **changes)
            return changes
        finally:
            with suppress(Exception):
                await self.leases.release(self.LEASE, self.owner)

    async def _loop(self) -> None:
        failing = False
        while True:
            # The first check one interval after start: a process that starts and stops at
            # once (a test, a crash loop) does not read the queues every time.
            await asyncio.sleep(self.check_s)
            try:
                await self.check()
                failing = False
            except asyncio.CancelledError:
                raise
            except DlqBusy:
                pass  # an operation holds the queue; next time
            except Exception as exc:
                if not failing:
                    log.warning("dlq.index_check_failed", error=type(exc).__name__)
                failing = True
