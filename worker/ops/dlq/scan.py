"""Taking every message of the dead-letter queue without consuming it, and the lock that keeps
two operations from missing each other's held messages (see :mod:`worker.ops.dlq`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass

import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity

from worker.config.settings import Settings
from worker.messaging.connection import connect
from worker.ops.dlq.model import DeadLetter, DlqBusy, DlqError, Filters

log = structlog.get_logger(__name__)

# Largest return batch whose order the quorum queue keeps (Erlang flatmap limit: 32 keys).
RETURN_CHUNK = 32
# How long to wait for the broker to apply one returned chunk before sending the next anyway
# (the first, lone message may wait for a backlog of acks).
RETURN_APPLY_WAIT_S = 1.0
RETURN_PROBE_WAIT_S = 5.0
# How often a long scan reports how far it got.
SCAN_REPORT_EVERY = 500
# --- taking messages without consuming them ------------------------------------------------


@dataclass
class Held:
    """A dead letter taken with ``basic.get`` and not yet settled."""

    letter: DeadLetter
    message: AbstractIncomingMessage
    settled: bool = False


class Scan:
    """Takes messages one by one, acks the ones an operation is done with, and gives the rest
    back in their original order (see the module docstring)."""

    def __init__(self, connection: AbstractConnection, queue: str) -> None:
        self._connection = connection
        self.queue_name = queue
        self._channel: AbstractChannel | None = None
        self._stats: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._held: list[Held] = []

    async def open(self) -> None:
        self._stats = await self._connection.channel()
        self._channel = await self._connection.channel()
        try:
            self._queue = await self._channel.declare_queue(self.queue_name, passive=True)
        except ChannelNotFoundEntity:
            raise DlqError(
                f"dead-letter queue {self.queue_name} does not exist; "
                "run `bc-sync topology apply` first"
            ) from None

    async def take(self) -> Held | None:
        """The next message, or None when the queue has no more for us."""
        assert self._queue is not None
        message = await self._queue.get(no_ack=False, fail=False, timeout=30)
        if message is None:
            return None
        held = Held(DeadLetter.from_incoming(message), message)
        self._held.append(held)
        return held

    async def take_matching(
        self, filters: Filters, scanned: Callable[[int, int], None] | None = None
    ) -> list[Held]:
        """Take everything; returns the first ``filters.limit`` matches in queue order.

        Never stops early: requeued messages go to the back, so only holding the whole queue
        lets :meth:`release` restore its order. ``scanned(read, matched)`` is told the count
        every :data:`SCAN_REPORT_EVERY` messages (a progress display for a large queue).
        """
        matched: list[Held] = []
        read = 0
        while (held := await self.take()) is not None:
            read += 1
            if scanned is not None and read % SCAN_REPORT_EVERY == 0:
                scanned(read, len(matched))
            if (filters.limit is None or len(matched) < filters.limit) and filters.matches(
                held.letter
            ):
                matched.append(held)
        if scanned is not None:
            scanned(read, len(matched))
        return matched

    async def ack(self, held: Held) -> None:
        """Settle for good: the message leaves the dead-letter queue."""
        await held.message.ack()
        held.settled = True

    async def _ready(self) -> int:
        assert self._stats is not None
        # The raw declare: a robust channel would answer repeated passive declares from a cache.
        underlay = await self._stats.get_underlay_channel()
        declared = await underlay.queue_declare(self.queue_name, passive=True)
        return int(declared.message_count or 0)

    async def release(self) -> None:
        """Give every unsettled message back, in order.

        First one message alone, then chunks of at most RETURN_CHUNK; each is applied by the
        broker (the ready count rose) before the next is sent. The lone first one matters after
        many acks: the queue client is then over its limit of pending commands and batches what
        it is sent, and a batched chunk came back reversed. Once the lone one is applied, the
        client has caught up.
        """
        pending = sorted(
            (h for h in self._held if not h.settled), key=lambda h: h.message.delivery_tag or 0
        )
        if not pending:
            return
        loop = asyncio.get_running_loop()
        try:
            base: int | None = await self._ready()
        except Exception:
            base = None
        returned = 0
        sizes = [1, *([RETURN_CHUNK] * (len(pending) // RETURN_CHUNK + 1))]
        for size in sizes:
            chunk = pending[returned : returned + size]
            if not chunk:
                break
            # multiple=True: one return command for the chunk (acked tags are not included).
            await chunk[-1].message.nack(multiple=True, requeue=True)
            for held in chunk:
                held.settled = True
            returned += len(chunk)
            if base is None or returned >= len(pending):
                continue
            wait = RETURN_PROBE_WAIT_S if size == 1 else RETURN_APPLY_WAIT_S
            deadline = loop.time() + wait
            try:
                while loop.time() < deadline:
                    if await self._ready() >= base + returned:
                        break
                    await asyncio.sleep(0.002)
            except Exception:
                base = None  # no pacing signal: the order may suffer, nothing else

    async def close(self) -> None:
        try:
            if self._channel is not None and not self._channel.is_closed:
                await self.release()
        except Exception as exc:
            # Closing the channel below still hands everything back (order may suffer).
            log.warning("dlq.hand_back_out_of_order", error=str(exc))
        finally:
            for channel in (self._channel, self._stats):
                if channel is not None and not channel.is_closed:
                    with suppress(Exception):
                        await channel.close()


@asynccontextmanager
async def locked(connection: AbstractConnection, name: str, wait: float) -> AsyncIterator[None]:
    """Hold the dead-letter lock: an exclusive queue, released by the broker if we die."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        channel = await connection.channel()
        try:
            await channel.declare_queue(
                name, exclusive=True, auto_delete=True, arguments={"x-queue-type": "classic"}
            )
            break
        except ChannelLockedResource:
            with suppress(Exception):
                await channel.close()
            if loop.time() >= deadline:
                raise DlqBusy(
                    f"another dead-letter operation is running (lock {name}); try again later"
                ) from None
            await asyncio.sleep(0.2)
    try:
        yield
    finally:
        with suppress(Exception):
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        with suppress(Exception):
            await channel.close()


@asynccontextmanager
async def session(
    settings: Settings,
    connection: AbstractConnection | None,
    *,
    lock_wait: float,
    exclusive: bool = True,
    queue: str | None = None,
) -> AsyncIterator[tuple[AbstractConnection, Scan]]:
    """The lock, and a scan of ``queue`` (the dead-letter queue by default; the archive queue
    is scanned under the same lock, so moving between the two never races another operation)."""
    own = connection is None
    conn = connection or await connect(settings, name="bc-sync dlq")
    dead = settings.queue("dead")
    lock: AbstractAsyncContextManager[None] = (
        locked(conn, f"{dead}.lock", lock_wait) if exclusive else nullcontext()
    )
    try:
        async with lock:
            scan = Scan(conn, queue or dead)
            try:
                await scan.open()
                yield conn, scan
            finally:
                await scan.close()
    finally:
        if own:
            with suppress(Exception):
                await conn.close()
