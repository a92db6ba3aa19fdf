"""The dead-letter operations: list, show, replay and purge (DESIGN §9), for the CLI and the API."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import structlog
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPConnectionError

from worker.config.settings import Settings
from worker.events.envelope import CONTENT_TYPE
from worker.messaging import headers as H
from worker.messaging.headers import iso
from worker.messaging.publisher import make_message
from worker.messaging.topology import Topology
from worker.ops.dlq.model import (
    DeadLetter,
    DlqBusy,
    DlqError,
    DlqUnavailable,
    Filters,
    Progress,
)
from worker.ops.dlq.scan import Held, Scan, session

# Called with each dead letter an operation settled (moved out of its queue).
Settled = Callable[[DeadLetter], None]


class Moving(TypedDict, total=False):
    """The options of an operation that moves dead letters (replay, archive, restore): what
    it reports while it runs, and how fast it goes."""

    progress: Progress | None  # (moved, total) after each message moved
    settled: Settled | None  # each dead letter once it left its queue (the index forgets it)
    scanned: Progress | None  # (read, matched) while the queue is read
    rate: float | None  # messages per second at the most (spares BC on a large backlog)


log = structlog.get_logger(__name__)
_R = TypeVar("_R")

# Replay publishes in flight (confirms pending) at once when no rate is set.
REPLAY_WINDOW = 32
# How long an operation waits for another one holding the lock.
LOCK_WAIT_S = 30.0

# --- the operations ------------------------------------------------------------------------


def _audit(action: str, actor: str, filters: Filters, **facts: Any) -> None:
    """The one audit line of an operation (also written when it failed)."""
    log.info("audit", action=action, actor=actor, filters=filters.describe(), **facts)


def _now() -> str:
    return iso(datetime.now(UTC)) or ""


async def list_dead_letters(
    settings: Settings,
    filters: Filters | None = None,
    *,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
    queue: str | None = None,
) -> list[DeadLetter]:
    """The matching dead letters in queue order. Reads only: every message stays, in order.

    ``queue``: another queue read the same way (the archive queue)."""
    filters = filters or Filters()
    async with session(settings, connection, lock_wait=lock_wait, queue=queue) as (_, scan):
        matched = await scan.take_matching(filters)
    return [h.letter for h in matched]


async def read_queues(
    settings: Settings,
    queues: Sequence[str],
    *,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
) -> list[list[DeadLetter]]:
    """Every message of each queue (the dead-letter and the archive queue), read under one
    hold of the lock so nothing moves between them meanwhile. Reads only."""
    out: list[list[DeadLetter]] = []
    async with session(settings, connection, lock_wait=lock_wait, queue=queues[0]) as (
        conn,
        first,
    ):
        out.append([h.letter for h in await first.take_matching(Filters())])
        for name in queues[1:]:
            scan = Scan(conn, name)
            try:
                await scan.open()
                out.append([h.letter for h in await scan.take_matching(Filters())])
            finally:
                await scan.close()
    return out


async def show_dead_letter(
    settings: Settings,
    message_id: str,
    *,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
) -> dict[str, Any] | None:
    """The :meth:`DeadLetter.detail` of one dead letter (by id or event id), or None."""
    filters = Filters(ids=frozenset({message_id}))
    async with session(settings, connection, lock_wait=lock_wait) as (_, scan):
        found = await scan.take_matching(filters)
    if not found:
        return None
    return found[0].letter.detail(copies=len(found))


@dataclass(frozen=True)
class ReplayResult:
    replay_id: str
    dry_run: bool
    matched: int
    replayed: int
    error: str | None
    letters: list[DeadLetter]

    @property
    def failed(self) -> int:
        return 0 if self.dry_run else self.matched - self.replayed

    def summary(self) -> dict[str, Any]:
        names = ("replay_id", "dry_run", "matched", "replayed", "failed", "error")
        return {name: getattr(self, name) for name in names}


async def replay(
    settings: Settings,
    filters: Filters | None = None,
    *,
    actor: str,
    dry_run: bool = False,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
    exclusive: bool = True,
    extra_headers: Callable[[DeadLetter], Mapping[str, Any]] | None = None,
    **moving: Unpack[Moving],
) -> ReplayResult:
    """Move the matching dead letters back to the exports queue (or, dry run, just say which).

    Each one: publish a copy (headers reset, see :meth:`DeadLetter.replay_headers`) with a
    confirm, then ack the dead letter (``moving``: see :class:`Moving`). ``exclusive=False``
    skips the lock: a concurrent operation then still never replays the same message, but may
    miss the ones this one holds. On a publish failure the run stops; the rest stay
    dead-lettered and ``error`` says why. ``extra_headers`` adds headers to each copy (the
    healer keeps the failure history and marks its replays).
    """
    filters = filters or Filters()
    replay_id = str(uuid.uuid4())
    exports = Topology.from_settings(settings).exports.name
    result = ReplayResult(replay_id, dry_run, 0, 0, None, [])
    outcome = "failed"
    try:
        async with session(settings, connection, lock_wait=lock_wait, exclusive=exclusive) as (
            conn,
            scan,
        ):
            matched = await scan.take_matching(filters, moving.get("scanned"))
            result = replace(result, matched=len(matched), letters=[h.letter for h in matched])
            if not dry_run and matched:
                at = _now()
                replayed, error = await _publish_all(
                    conn,
                    scan,
                    matched,
                    exports,
                    lambda letter: {
                        **letter.replay_headers(replay_id, at),
                        **(extra_headers(letter) if extra_headers is not None else {}),
                    },
                    moving,
                )
                result = replace(result, replayed=replayed, error=error)
        outcome = "ok" if result.error is None else "partial"
        return result
    finally:
        _audit(
            "dlq.replay",
            actor,
            filters,
            dry_run=dry_run,
            replay_id=replay_id,
            matched=result.matched,
            replayed=result.replayed,
            outcome=outcome,
            error=result.error,
        )


async def _publish_all(
    connection: AbstractConnection,
    scan: Scan,
    matched: list[Held],
    target: str,
    headers_for: Callable[[DeadLetter], dict[str, Any]],
    moving: Moving,
) -> tuple[int, str | None]:
    """Publish a copy of each held message to the ``target`` queue with a confirm, then ack
    it: a crash between the two leaves it in both queues, never in neither."""
    progress, settled = moving.get("progress"), moving.get("settled")
    rate = moving.get("rate")
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    loop = asyncio.get_running_loop()
    total = len(matched)
    done = 0
    error: str | None = None
    window = asyncio.Semaphore(1 if rate else REPLAY_WINDOW)

    async def one(held: Held) -> None:
        nonlocal done, error
        letter = held.letter
        copy = make_message(
            letter.body,
            message_id=letter.message_id,
            headers=headers_for(letter),
            content_type=letter.content_type or CONTENT_TYPE,
        )
        try:
            # mandatory + on_return_raises: a missing target queue fails instead of dropping.
            await channel.default_exchange.publish(copy, routing_key=target, mandatory=True)
        except Exception as exc:
            error = error or f"publish to {target} failed: {type(exc).__name__}: {exc}"
            return
        try:
            await scan.ack(held)
        except Exception as exc:
            # Published but not acked: the broker gives it back to the dead-letter queue, so
            # it is now in both queues (never in neither).
            error = error or f"ack failed after publish: {type(exc).__name__}: {exc}"
            return
        done += 1
        if settled is not None:
            settled(letter)
        if progress is not None:
            progress(done, total)

    tasks: list[asyncio.Task[None]] = []
    next_at = loop.time()
    try:
        for held in matched:
            if rate:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at = max(next_at, loop.time()) + 1.0 / rate
            await window.acquire()
            if error is not None:
                window.release()
                break
            task = asyncio.create_task(one(held))
            task.add_done_callback(lambda _t: window.release())
            tasks.append(task)
        await asyncio.gather(*tasks)
    finally:
        with suppress(Exception):
            await channel.close()
    return done, error


@dataclass(frozen=True)
class PurgeResult:
    purge_id: str
    matched: int
    purged: int
    archive: Path | None
    letters: list[DeadLetter]

    def summary(self) -> dict[str, Any]:
        return {
            "purge_id": self.purge_id,
            "matched": self.matched,
            "purged": self.purged,
            "archive": str(self.archive) if self.archive else None,
        }


def default_archive_path(directory: Path | None = None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (directory or Path.cwd()) / f"dlq-archive-{stamp}.jsonl"


def _write_archive(path: Path, records: list[dict[str, Any]]) -> None:
    """Append the records and fsync file and folder: they must be on disk before the ack."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def purge(
    settings: Settings,
    filters: Filters | None = None,
    *,
    actor: str,
    archive: Path | None,
    only_ids: Collection[str] | None = None,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
) -> PurgeResult:
    """Delete the matching dead letters, after writing them to ``archive`` (JSON lines, fsynced).

    ``only_ids`` narrows the purge to what a person confirmed after a listing, so a dead letter
    that arrived meanwhile is never deleted unseen. ``archive=None`` deletes without a copy.
    """
    filters = filters or Filters()
    purge_id = str(uuid.uuid4())
    result = PurgeResult(purge_id, 0, 0, None, [])
    outcome = "failed"
    try:
        async with session(settings, connection, lock_wait=lock_wait) as (_, scan):
            matched = await scan.take_matching(filters)
            if only_ids is not None:
                allowed = set(only_ids)
                matched = [h for h in matched if h.letter.id in allowed]
            result = replace(result, matched=len(matched), letters=[h.letter for h in matched])
            if matched:
                if archive is not None:
                    at = _now()
                    records = [h.letter.archive_record(purge_id, at) for h in matched]
                    await asyncio.to_thread(_write_archive, archive, records)
                    result = replace(result, archive=archive)
                for held in matched:
                    await scan.ack(held)
                result = replace(result, purged=len(matched))
        outcome = "ok"
        return result
    finally:
        _audit(
            "dlq.purge",
            actor,
            filters,
            purge_id=purge_id,
            matched=result.matched,
            purged=result.purged,
            archive=str(result.archive) if result.archive else None,
            outcome=outcome,
        )


@dataclass(frozen=True)
class MoveResult:
    """What an archive or a restore did."""

    move_id: str
    matched: int
    moved: int
    error: str | None

    def summary(self) -> dict[str, Any]:
        names = ("move_id", "matched", "moved", "error")
        return {name: getattr(self, name) for name in names}


async def archive(
    settings: Settings,
    filters: Filters,
    *,
    actor: str,
    reason: str,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
    **moving: Unpack[Moving],
) -> MoveResult:
    """Move the matching dead letters to the archive queue (``<prefix>.dead.archived``), with
    who archived them, when and why in their headers: kept and counted, out of the active list
    and of every replay until :func:`restore` brings them back."""
    at = _now()
    topology = Topology.from_settings(settings)
    return await _move(
        settings,
        filters,
        action="dlq.archive",
        actor=actor,
        source=topology.dead.name,
        target=topology.archived.name,
        headers_for=lambda letter: H.archive_headers(
            letter.headers, by=actor, reason=reason, at=at
        ),
        connection=connection,
        lock_wait=lock_wait,
        facts={"reason": reason},
        moving=moving,
    )


async def restore(
    settings: Settings,
    filters: Filters,
    *,
    actor: str,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
    **moving: Unpack[Moving],
) -> MoveResult:
    """Bring archived dead letters back to the dead-letter queue (archive headers removed)."""
    topology = Topology.from_settings(settings)
    return await _move(
        settings,
        filters,
        action="dlq.restore",
        actor=actor,
        source=topology.archived.name,
        target=topology.dead.name,
        headers_for=lambda letter: H.restore_headers(letter.headers),
        connection=connection,
        lock_wait=lock_wait,
        facts={},
        moving=moving,
    )


async def _move(
    settings: Settings,
    filters: Filters,
    *,
    action: str,
    actor: str,
    source: str,
    target: str,
    headers_for: Callable[[DeadLetter], dict[str, Any]],
    connection: AbstractConnection | None,
    lock_wait: float,
    facts: dict[str, Any],
    moving: Moving,
) -> MoveResult:
    move_id = str(uuid.uuid4())
    result = MoveResult(move_id, 0, 0, None)
    outcome = "failed"
    try:
        async with session(settings, connection, lock_wait=lock_wait, queue=source) as (
            conn,
            scan,
        ):
            matched = await scan.take_matching(filters, moving.get("scanned"))
            result = replace(result, matched=len(matched))
            if matched:
                moved, error = await _publish_all(conn, scan, matched, target, headers_for, moving)
                result = replace(result, moved=moved, error=error)
        outcome = "ok" if result.error is None else "partial"
        return result
    finally:
        _audit(
            action,
            actor,
            filters,
            move_id=move_id,
            matched=result.matched,
            moved=result.moved,
            outcome=outcome,
            error=result.error,
            **facts,
        )


@dataclass
class DeadLetters:
    """The dead-letter operations of one process, on the broker connection it owns.

    The connection is given by the composition root (``worker.app.Runtime``), so the API does
    not open one per request; without one (the CLI) each call opens its own. Operations of one
    process take turns (the broker's exclusive-queue lock is per connection, so it does not
    keep two operations on one connection apart). A broker that cannot be reached is
    :class:`DlqUnavailable`, without the library's text (it can hold the URL).
    """

    settings: Settings
    connection: AbstractConnection | None = None
    lock_wait: float = LOCK_WAIT_S
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @asynccontextmanager
    async def _guarded(self, wait: float | None = None) -> AsyncIterator[float]:
        """Take this process's turn (waiting ``wait``, or :attr:`lock_wait`, for it); yields
        how long the operation may wait for the broker-side lock in turn."""
        wait = self.lock_wait if wait is None else wait
        try:
            async with asyncio.timeout(wait):
                await self._turn.acquire()
        except TimeoutError:
            raise DlqBusy("another dead-letter operation is running; try again later") from None
        try:
            yield wait
        except DlqError:
            raise
        except (AMQPConnectionError, ConnectionError, OSError) as exc:
            log.warning("dlq.broker_unreachable", error=type(exc).__name__)
            raise DlqUnavailable("the message broker cannot be reached") from None
        finally:
            self._turn.release()

    async def _call(
        self,
        operation: Callable[..., Awaitable[_R]],
        *args: Any,
        wait: float | None = None,
        **kwargs: Any,
    ) -> _R:
        """Run a module-level operation on this process's connection, in its turn."""
        async with self._guarded(wait) as lock_wait:
            return await operation(
                self.settings, *args, connection=self.connection, lock_wait=lock_wait, **kwargs
            )

    async def list_letters(
        self, filters: Filters | None = None, *, queue: str | None = None, wait: float | None = None
    ) -> list[DeadLetter]:
        """The dead letters (of ``queue``: the archive queue's when named), read without
        consuming them; ``wait`` overrides how long to wait for another operation."""
        return await self._call(list_dead_letters, filters, wait=wait, queue=queue)

    async def snapshot(
        self, queues: Sequence[str], *, wait: float | None = None
    ) -> tuple[list[DeadLetter], list[DeadLetter]]:
        """Every dead letter of the dead-letter and the archive queue, under one lock."""
        dead, archived = await self._call(read_queues, queues, wait=wait)
        return dead, archived

    async def show(self, message_id: str) -> dict[str, Any] | None:
        return await self._call(show_dead_letter, message_id)

    async def replay(
        self,
        filters: Filters | None = None,
        *,
        actor: str,
        dry_run: bool = False,
        wait: float | None = None,
        **moving: Unpack[Moving],
    ) -> ReplayResult:
        return await self._call(replay, filters, wait=wait, actor=actor, dry_run=dry_run, **moving)

    async def archive(
        self,
        filters: Filters,
        *,
        actor: str,
        reason: str,
        wait: float | None = None,
        **moving: Unpack[Moving],
    ) -> MoveResult:
        return await self._call(archive, filters, wait=wait, actor=actor, reason=reason, **moving)

    async def restore(
        self, filters: Filters, *, actor: str, wait: float | None = None, **moving: Unpack[Moving]
    ) -> MoveResult:
        return await self._call(restore, filters, wait=wait, actor=actor, **moving)
