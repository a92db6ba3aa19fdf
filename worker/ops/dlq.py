"""Dead-letter queue operations (DESIGN §9): list, show, replay and purge, for the CLI and the API.

How the dead-letter queue is read without consuming it
-------------------------------------------------------
AMQP has no "peek". Every operation takes *all* messages with ``basic.get`` without ack on a
dedicated channel until the queue answers empty, settles (acks) the ones it is done with, and
hands the rest back with ``basic.nack(requeue=True)``. Broker facts that shape how (checked on
RabbitMQ 3.10.8 quorum queues; ``tests/integration/test_dlq.py`` holds us to them):

- A nack-requeued message goes to the **back** of a quorum queue. So an operation never stops
  early (not even for ``limit``): it holds the whole queue, and handing everything back in the
  original order rebuilds the queue as it was.
- One return command for more than 32 messages (a ``nack(multiple=True)`` over everything, or
  the client batching many pending returns into one) comes back **scrambled**: the quorum state
  machine folds over an Erlang map of message ids, sorted only up to 32 keys. And a chunk sent
  while the queue client is over its limit of pending commands (right after many acks) was
  seen coming back reversed. So messages go back one alone first (waiting until it is applied
  means the client caught up), then in chunks of at most :data:`RETURN_CHUNK`, each applied by
  the broker (the queue's ready count rose) before the next is sent.
- Closing a channel that holds messages puts them back at the front, but scrambled; that only
  happens here after a crash. Nothing is lost, the order may be.

Side effects a read still has: each message's ``x-delivery-count`` rises and ``redelivered`` is
set. The dead-letter queue has no delivery limit, so this is harmless; never give it one. A dead
letter that arrives while messages are being handed back lands ahead of them.

Held messages are invisible to everyone else, so two operations never settle the same message.
To also make them not *miss* each other's held messages, every operation first takes a lock: an
exclusive queue ``<prefix>.dead.lock`` (the broker releases it when the holder's connection
dies, so a killed replay never leaves it behind).

Replay publishes a copy to the exports queue with a publisher confirm and only then acks the
dead letter: a crash between the two leaves the message in both queues, never in neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, get_args

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity

from worker.config.settings import Settings
from worker.errors import CATALOGUE
from worker.events.envelope import CONTENT_TYPE
from worker.log import redact, redact_text
from worker.messaging import headers as H
from worker.messaging.publisher import make_message
from worker.messaging.topology import DELIVERY_LIMIT, Topology

log = structlog.get_logger(__name__)

# Largest return batch whose order the quorum queue keeps (Erlang flatmap limit: 32 keys).
RETURN_CHUNK = 32
# How long to wait for the broker to apply one returned chunk before sending the next anyway
# (the first, lone message may wait for a backlog of acks).
RETURN_APPLY_WAIT_S = 1.0
RETURN_PROBE_WAIT_S = 5.0
# Replay publishes in flight (confirms pending) at once when no rate is set.
REPLAY_WINDOW = 32
# How long an operation waits for another one holding the lock.
LOCK_WAIT_S = 30.0

# Headers the broker sets; a replayed copy starts without them.
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)

GroupBy = Literal["code", "org", "type"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)
Progress = Callable[[int, int], None]


class DlqError(Exception):
    """An operation could not run: queue missing, broker refused a publish, ..."""


class DlqBusy(DlqError):
    """Another dead-letter operation held the lock for longer than we were willing to wait."""


class FilterError(ValueError):
    """A filter value is not valid; ``field`` names it (for CLI messages and API 422s)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


# --- times ---------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO date or date-time (UTC when no offset is given), or a relative ``30m``/``2h``/``7d``.

    Relative times count back from ``now``.
    """
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match[1]) * _UNIT_S[match[2].lower()]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date or date-time (2026-11-20, 2026-11-20T10:00Z) "
            "nor a relative time (30m, 2h, 7d)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with milliseconds and ``Z``, as the consumer writes failure times."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value:
        with suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


# --- one dead letter -----------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Header values as JSON: AMQP tables may hold datetimes, bytes and decimals."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def redacted(value: Any) -> Any:
    """Defence in depth before anything is shown: mask secret-looking keys and text."""
    return redact(None, "", {"value": jsonable(value)})["value"]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        return text or None
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _subject(envelope: Mapping[str, Any]) -> str | None:
    """``invoice 1864`` from an event's data, like the consumer's ``x-bc-subject``."""
    data = envelope.get("data")
    if not isinstance(data, dict):
        return None
    for name in ("invoice", "customer", "project"):
        obj = data.get(name)
        if isinstance(obj, dict):
            number = _text(obj.get("number")) or _text(obj.get("id"))
            return f"{name} {number}" if number else name
    return None


def _deaths(headers: Mapping[str, Any]) -> list[dict[str, Any]]:
    deaths = headers.get("x-death")
    return [d for d in deaths if isinstance(d, dict)] if isinstance(deaths, list) else []


def body_id(body: bytes) -> str:
    """Stable id of a message without an event id: a hash of its body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as people look at it."""

    id: str  # the event id, or a body hash when there is none; what `show` takes
    event_id: str | None
    org: str | None
    type: str | None
    subject: str | None  # the Moment object, e.g. "invoice 1864"
    code: str
    error_class: str  # invalid | permanent | attempts_exhausted | delivery_limit | unknown
    message: str
    attempts: int | None
    first_failure: datetime | None
    last_failure: datetime | None
    routing_key: str | None  # the original routing key (= type), used by replay
    replay_id: str | None  # set when this dead letter is a replayed event that failed again
    body: bytes = field(repr=False)
    headers: Mapping[str, Any] = field(repr=False)
    content_type: str | None = field(default=None, repr=False)
    message_id: str | None = field(default=None, repr=False)

    @classmethod
    def from_message(
        cls,
        body: bytes,
        headers: Mapping[str, Any] | None,
        *,
        content_type: str | None = None,
        message_id: str | None = None,
    ) -> DeadLetter:
        h = dict(headers or {})
        envelope = _json_object(body) or {}
        event_id = _text(h.get(H.EVENT_ID)) or _text(envelope.get("id"))
        deaths = _deaths(h)
        limit_death = next((d for d in deaths if d.get("reason") == "delivery_limit"), None)
        error_class = _text(h.get(H.ERROR_CLASS))
        code = _text(h.get(H.ERROR_CODE))
        message = _text(h.get(H.ERROR_MESSAGE)) or ""
        first = _time(h.get(H.FIRST_FAILURE))
        last = _time(h.get(H.LAST_FAILURE))
        attempts = _int(h.get(H.ATTEMPTS))
        if error_class is None and (
            limit_death is not None or h.get("x-first-death-reason") == "delivery_limit"
        ):
            # Dead-lettered by the broker itself (consumers kept dying on it): none of our
            # failure headers, unless it had been round the retry ladder before.
            death_time = _time((limit_death or {}).get("time"))
            before = f" Last failure before that: {code}: {message}" if code else ""
            error_class, code = "delivery_limit", "DELIVERY-LIMIT"
            message = (
                f"Delivered more than {DELIVERY_LIMIT} times without an outcome "
                f"(broker delivery limit).{before}"
            )
            first = first or death_time
            last = death_time or last
            attempts = _int(h.get(H.ATTEMPT))
        routing_key = _text(h.get(H.ROUTING_KEY)) or _text(envelope.get("type"))
        if routing_key is None and limit_death is not None:
            keys = limit_death.get("routing-keys")
            routing_key = _text(keys[0]) if isinstance(keys, list) and keys else None
        return cls(
            id=event_id or body_id(body),
            event_id=event_id,
            org=_text(h.get(H.ORG)) or _text(envelope.get("organizationid")),
            type=_text(h.get(H.EVENT_TYPE)) or _text(envelope.get("type")) or routing_key,
            subject=_text(h.get(H.SUBJECT)) or _subject(envelope),
            code=code or "UNKNOWN",
            error_class=error_class or "unknown",
            message=message,
            attempts=attempts,
            first_failure=first,
            last_failure=last,
            routing_key=routing_key,
            replay_id=_text(h.get(H.REPLAY_ID)),
            body=body,
            headers=h,
            content_type=content_type,
            message_id=message_id,
        )

    @classmethod
    def from_incoming(cls, message: AbstractIncomingMessage) -> DeadLetter:
        return cls.from_message(
            message.body,
            message.headers,
            content_type=message.content_type,
            message_id=message.message_id,
        )

    def row(self) -> dict[str, Any]:
        """The list view: one flat JSON object, redacted."""
        row: dict[str, Any] = {
            "id": self.id,
            "event_id": self.event_id,
            "org": self.org,
            "type": self.type,
            "subject": self.subject,
            "code": self.code,
            "error_class": self.error_class,
            "message": self.message,
            "attempts": self.attempts,
            "first_failure": iso(self.first_failure),
            "last_failure": iso(self.last_failure),
            "replay_id": self.replay_id,
        }
        return dict(redacted(row))

    def history(self) -> list[dict[str, Any]]:
        raw = self.headers.get(H.HISTORY)
        items = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
        return [dict(redacted(h)) for h in items]

    def detail(self, *, copies: int = 1) -> dict[str, Any]:
        """The ``show`` view: envelope, every header, history, what the code means. Redacted."""
        entry = CATALOGUE.get(self.code)
        envelope = _json_object(self.body)
        body_text = None
        if envelope is None:
            body_text = redact_text(self.body.decode("utf-8", "replace"))
        return {
            "id": self.id,
            "summary": self.row(),
            "error": {
                "code": self.code,
                "title": entry.title if entry else "Unknown error code.",
                "fix": entry.fix
                if entry
                else "Look at the worker logs for this event id to find the cause.",
            },
            "history": self.history(),
            "properties": {"content_type": self.content_type, "message_id": self.message_id},
            "headers": redacted(self.headers),
            "envelope": redacted(envelope) if envelope is not None else None,
            "body": body_text,
            "copies": copies,
        }

    def archive_record(self, purge_id: str, at: str) -> dict[str, Any]:
        """What the purge archive keeps: enough to re-publish the message faithfully."""
        envelope = _json_object(self.body)
        record: dict[str, Any] = {
            "purge_id": purge_id,
            "purged_at": at,
            "id": self.id,
            "properties": {"content_type": self.content_type, "message_id": self.message_id},
            "headers": jsonable(self.headers),
            "envelope": envelope,
        }
        if envelope is None:
            try:
                record["body"] = self.body.decode("utf-8")
            except UnicodeDecodeError:
                record["body_hex"] = self.body.hex()
        return record

    def replay_headers(self, replay_id: str, at: str) -> dict[str, Any]:
        """Headers of the replayed copy: our failure headers and the broker's death records
        dropped (the attempt count starts again), the original routing key kept."""
        out = {
            k: v
            for k, v in self.headers.items()
            if not k.startswith(H.PREFIX) and k not in BROKER_HEADERS
        }
        if self.routing_key:
            out[H.ROUTING_KEY] = self.routing_key
        out[H.REPLAY_ID] = replay_id
        out[H.REPLAYED_AT] = at
        return out


# --- filters -------------------------------------------------------------------------------


def _glob(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    if value is None:
        return False
    if any(c in pattern for c in "*?["):
        return fnmatchcase(value, pattern)
    return value == pattern


@dataclass(frozen=True)
class Filters:
    """Which dead letters an operation concerns. Empty filters select everything.

    ``org``, ``type`` and ``code`` match exactly, or as a glob when they contain ``*?[``.
    ``since`` (inclusive) and ``until`` (exclusive) apply to the last failure time. ``ids``
    selects by :attr:`DeadLetter.id` / event id. ``limit`` keeps the first that many matches
    (in queue order).
    """

    org: str | None = None
    type: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[str] = frozenset()
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise FilterError("limit", "must be at least 1")
        if self.since and self.until and self.since >= self.until:
            raise FilterError("until", "must be later than since")

    @classmethod
    def parse(
        cls,
        *,
        org: str | None = None,
        type: str | None = None,
        code: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        ids: Iterable[str] | None = None,
        limit: int | str | None = None,
        now: datetime | None = None,
    ) -> Filters:
        """Build filters from user input (CLI, API); raises :class:`FilterError`."""
        times: dict[str, datetime | None] = {}
        for name, value in (("since", since), ("until", until)):
            if isinstance(value, datetime) or not value:
                times[name] = value if isinstance(value, datetime) else None
                continue
            try:
                times[name] = parse_time(value, now=now)
            except ValueError as exc:
                raise FilterError(name, str(exc)) from None
        count: int | None = None
        if limit is not None and limit != "":
            try:
                count = int(limit)
            except (TypeError, ValueError):
                raise FilterError("limit", f"must be a whole number, got {limit!r}") from None
        return cls(
            org=org or None,
            type=type or None,
            code=code or None,
            since=times["since"],
            until=times["until"],
            ids=frozenset(i for i in (ids or ()) if i),
            limit=count,
        )

    def matches(self, letter: DeadLetter) -> bool:
        if self.ids and letter.id not in self.ids and letter.event_id not in self.ids:
            return False
        if not (
            _glob(self.org, letter.org)
            and _glob(self.type, letter.type)
            and _glob(self.code, letter.code)
        ):
            return False
        if self.since or self.until:
            at = letter.last_failure
            if at is None:
                return False
            if self.since and at < self.since:
                return False
            if self.until and at >= self.until:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The filters that are set, as JSON (audit lines, API answers)."""
        out: dict[str, Any] = {}
        for name in ("org", "type", "code"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.since:
            out["since"] = iso(self.since)
        if self.until:
            out["until"] = iso(self.until)
        if self.ids:
            out["ids"] = sorted(self.ids)
        if self.limit is not None:
            out["limit"] = self.limit
        return out


def group_counts(letters: Iterable[DeadLetter], by: str) -> list[tuple[str, int]]:
    """Counts per code, organization or type; largest first."""
    if by not in GROUP_BY:
        raise FilterError("group_by", f"must be one of {', '.join(GROUP_BY)}")
    counts = Counter(getattr(letter, by) or "(none)" for letter in letters)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# --- taking messages without consuming them ------------------------------------------------


@dataclass
class Held:
    """A dead letter taken with ``basic.get`` and not yet settled."""

    letter: DeadLetter
    message: AbstractIncomingMessage
    settled: bool = False


class _Scan:
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

    async def take_matching(self, filters: Filters) -> list[Held]:
        """Take everything; returns the first ``filters.limit`` matches in queue order.

        Never stops early: requeued messages go to the back, so only holding the whole queue
        lets :meth:`release` restore its order.
        """
        matched: list[Held] = []
        while (held := await self.take()) is not None:
            if (filters.limit is None or len(matched) < filters.limit) and filters.matches(
                held.letter
            ):
                matched.append(held)
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
            log.warning("could not hand back dead letters in order", error=str(exc))
        finally:
            for channel in (self._channel, self._stats):
                if channel is not None and not channel.is_closed:
                    with suppress(Exception):
                        await channel.close()


@asynccontextmanager
async def _locked(connection: AbstractConnection, name: str, wait: float) -> AsyncIterator[None]:
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
async def _session(
    settings: Settings,
    connection: AbstractConnection | None,
    *,
    lock_wait: float,
    exclusive: bool = True,
) -> AsyncIterator[tuple[AbstractConnection, _Scan]]:
    own = connection is None
    conn = connection or await aio_pika.connect(
        settings.amqp_url.get_secret_value(),
        client_properties={"connection_name": "bc-sync dlq"},
    )
    dead = settings.queue("dead")
    lock: AbstractAsyncContextManager[None] = (
        _locked(conn, f"{dead}.lock", lock_wait) if exclusive else nullcontext()
    )
    try:
        async with lock:
            scan = _Scan(conn, dead)
            try:
                await scan.open()
                yield conn, scan
            finally:
                await scan.close()
    finally:
        if own:
            with suppress(Exception):
                await conn.close()


# --- the operations ------------------------------------------------------------------------


def _now() -> str:
    return iso(datetime.now(UTC)) or ""


async def list_dead_letters(
    settings: Settings,
    filters: Filters | None = None,
    *,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
) -> list[DeadLetter]:
    """The matching dead letters in queue order. Reads only: every message stays, in order."""
    filters = filters or Filters()
    async with _session(settings, connection, lock_wait=lock_wait) as (_, scan):
        matched = await scan.take_matching(filters)
    return [h.letter for h in matched]


async def show_dead_letter(
    settings: Settings,
    message_id: str,
    *,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
) -> dict[str, Any] | None:
    """The :meth:`DeadLetter.detail` of one dead letter (by id or event id), or None."""
    filters = Filters(ids=frozenset({message_id}))
    async with _session(settings, connection, lock_wait=lock_wait) as (_, scan):
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
        return {
            "replay_id": self.replay_id,
            "dry_run": self.dry_run,
            "matched": self.matched,
            "replayed": self.replayed,
            "failed": self.failed,
            "error": self.error,
        }


async def replay(
    settings: Settings,
    filters: Filters | None = None,
    *,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    rate: float | None = None,
    connection: AbstractConnection | None = None,
    lock_wait: float = LOCK_WAIT_S,
    exclusive: bool = True,
    extra_headers: Callable[[DeadLetter], Mapping[str, Any]] | None = None,
) -> ReplayResult:
    """Move the matching dead letters back to the exports queue (or, dry run, just say which).

    Each one: publish a copy (headers reset, see :meth:`DeadLetter.replay_headers`) with a
    confirm, then ack the dead letter. ``rate`` caps messages per second (spares BC when a
    large backlog goes back). ``exclusive=False`` skips the lock: a concurrent operation then
    still never replays the same message, but may miss the ones this one holds.
    ``extra_headers`` adds headers to each copy (the healer keeps the failure history and
    marks its replays). On a publish failure the run stops; the rest stay dead-lettered and
    ``error`` says why.
    """
    filters = filters or Filters()
    replay_id = str(uuid.uuid4())
    exports = Topology.from_settings(settings).exports.name
    result = ReplayResult(replay_id, dry_run, 0, 0, None, [])
    outcome = "failed"
    try:
        async with _session(settings, connection, lock_wait=lock_wait, exclusive=exclusive) as (
            conn,
            scan,
        ):
            matched = await scan.take_matching(filters)
            result = replace(result, matched=len(matched), letters=[h.letter for h in matched])
            if not dry_run and matched:
                replayed, error = await _publish_all(
                    conn, scan, matched, exports, replay_id, progress, rate, extra_headers
                )
                result = replace(result, replayed=replayed, error=error)
        outcome = "ok" if result.error is None else "partial"
        return result
    finally:
        log.info(
            "audit",
            action="dlq.replay",
            actor=actor,
            filters=filters.describe(),
            dry_run=dry_run,
            replay_id=replay_id,
            matched=result.matched,
            replayed=result.replayed,
            outcome=outcome,
            error=result.error,
        )


async def _publish_all(
    connection: AbstractConnection,
    scan: _Scan,
    matched: list[Held],
    exports: str,
    replay_id: str,
    progress: Progress | None,
    rate: float | None,
    extra_headers: Callable[[DeadLetter], Mapping[str, Any]] | None = None,
) -> tuple[int, str | None]:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    loop = asyncio.get_running_loop()
    total = len(matched)
    done = 0
    error: str | None = None
    at = _now()
    window = asyncio.Semaphore(1 if rate else REPLAY_WINDOW)

    async def one(held: Held) -> None:
        nonlocal done, error
        letter = held.letter
        headers = letter.replay_headers(replay_id, at)
        if extra_headers is not None:
            headers.update(extra_headers(letter))
        copy = make_message(
            letter.body,
            message_id=letter.message_id,
            headers=headers,
            content_type=letter.content_type or CONTENT_TYPE,
        )
        try:
            # mandatory + on_return_raises: a missing exports queue fails instead of dropping.
            await channel.default_exchange.publish(copy, routing_key=exports, mandatory=True)
        except Exception as exc:
            error = error or f"publish to {exports} failed: {type(exc).__name__}: {exc}"
            return
        try:
            await scan.ack(held)
        except Exception as exc:
            # Published but not acked: the broker gives it back to the dead-letter queue, so
            # it is now in both queues (never in neither).
            error = error or f"ack failed after publish: {type(exc).__name__}: {exc}"
            return
        done += 1
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
        async with _session(settings, connection, lock_wait=lock_wait) as (_, scan):
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
        log.info(
            "audit",
            action="dlq.purge",
            actor=actor,
            filters=filters.describe(),
            purge_id=purge_id,
            matched=result.matched,
            purged=result.purged,
            archive=str(result.archive) if result.archive else None,
            outcome=outcome,
        )
