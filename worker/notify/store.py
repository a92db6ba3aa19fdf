"""Durable notification state: failures and resolutions waiting for a digest, and the digests.

An item is pending until a digest claims it (``digest_id`` set, in the same transaction that
creates the digest row). A digest remembers its recipients and which of them already have it,
so a retry after an SMTP outage or a crash reaches only the ones still missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Required, TypedDict, Unpack

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from worker.log import redact_text
from worker.store import JsonType, UtcDateTime, metadata

if TYPE_CHECKING:
    from worker.store import Store

MESSAGE_MAX = 500

_Id = BigInteger().with_variant(Integer, "sqlite")

notification_items = Table(
    "notification_items",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("org_id", String(100), nullable=False),
    Column("kind", String(20), nullable=False),  # failure, resolved, warning or waiting
    Column("code", String(100)),
    Column("object_type", String(50)),
    Column("moment_id", String(200)),
    Column("moment_number", String(200)),
    Column("event_id", String(200)),
    Column("message", Text),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("digest_id", BigInteger),
)

notification_digests = Table(
    "notification_digests",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("org_id", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("resolved", Integer, nullable=False),
    Column("recipients", JsonType, nullable=False),  # [{"email": …} | {"user_id": …}]
    Column("delivered", JsonType, nullable=False),  # {"email:a@b": "sent" | "refused", …}
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime),
    Column("last_error", Text),
    Column("sent_at", UtcDateTime),
)

FAILURE = "failure"
RESOLVED = "resolved"
# Transferred with a value left out (a DataWarning): needs a person, but is never an open
# failure, never resolved and never dead-lettered.
WARNING = "warning"
# Acked as waiting for a person in BC (e.g. an invoice held for approval): like a warning it
# needs a person and is never an open failure, but the digest tells it apart.
WAITING = "waiting"


def utcnow() -> datetime:
    return datetime.now(UTC)


def recipient_key(recipient: Mapping[str, str]) -> str:
    """``email:<address>`` or ``user:<id>``: how ``delivered`` names a recipient."""
    if recipient.get("email"):
        return f"email:{recipient['email'].casefold()}"
    return f"user:{recipient.get('user_id', '')}"


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value


class NewItem(TypedDict, total=False):
    """What a failure or warning item says: its code and message, and the object when known."""

    code: Required[str]
    message: Required[str]
    object_type: str | None
    moment_id: str | None
    moment_number: str | None
    event_id: str | None
    at: datetime | None  # when it happened (now by default)


def _item_row(org_id: str, kind: str, item: NewItem) -> dict[str, Any]:
    """The ``notification_items`` row of an item, each value cut to its column."""
    return {
        "org_id": org_id[:100],
        "kind": kind,
        "code": item["code"][:100],
        "object_type": _clip(item.get("object_type"), 50),
        "moment_id": _clip(item.get("moment_id"), 200),
        "moment_number": _clip(item.get("moment_number"), 200),
        "event_id": _clip(item.get("event_id"), 200),
        "message": clean_message(item["message"]),
        "occurred_at": item.get("at") or utcnow(),
    }


def clean_message(message: str | None) -> str:
    """One line, no secrets, no stack trace, bounded: safe to put in a mail."""
    text = (message or "").split("Traceback (most recent call last)", 1)[0]
    text = " ".join(text.split())
    return redact_text(text)[:MESSAGE_MAX]


@dataclass(frozen=True)
class Item:
    id: int
    kind: str
    code: str | None
    object_type: str | None
    moment_id: str | None
    moment_number: str | None
    event_id: str | None
    message: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class DigestRow:
    id: int
    org_id: str
    created_at: datetime
    window_start: datetime
    window_end: datetime
    failures: int
    resolved: int
    recipients: list[dict[str, str]]
    delivered: dict[str, str]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None

    @property
    def missing(self) -> list[dict[str, str]]:
        """Recipients who do not have this digest yet."""
        return [r for r in self.recipients if recipient_key(r) not in self.delivered]


def due_at(
    oldest_pending: datetime, last_digest: datetime | None, first_delay_s: float, window_s: float
) -> datetime:
    """When pending items go out: ``first_delay`` after the first failure of a quiet period,
    and never sooner than ``window`` after the previous digest."""
    due = oldest_pending + timedelta(seconds=first_delay_s)
    if last_digest is not None:
        due = max(due, last_digest + timedelta(seconds=window_s))
    return due


class NotificationRepository:
    """Queries on ``notification_items`` and ``notification_digests``."""

    items = notification_items
    digests = notification_digests

    def __init__(self, store: Store) -> None:
        self._store = store

    # --- recording -------------------------------------------------------------------------

    async def add_failure(self, org_id: str, **item: Unpack[NewItem]) -> None:
        async with self._store.write() as conn:
            await conn.execute(insert(self.items).values(**_item_row(org_id, FAILURE, item)))

    async def add_warning(
        self, org_id: str, *, kind: str = WARNING, **item: Unpack[NewItem]
    ) -> None:
        """Record a warning (or, with ``kind=WAITING``, an object waiting for a person in BC);
        the same object reported again with the same code before the next digest updates that
        line (the latest message wins, its first time stays)."""
        t = self.items
        row = _item_row(org_id, kind, item)
        async with self._store.write() as conn:
            if row["object_type"] and row["moment_id"]:
                pending = and_(
                    t.c.org_id == row["org_id"],
                    t.c.kind == kind,
                    t.c.code == row["code"],
                    t.c.object_type == row["object_type"],
                    t.c.moment_id == row["moment_id"],
                    t.c.digest_id.is_(None),
                )
                latest = {k: row[k] for k in ("message", "moment_number", "event_id")}
                if (await conn.execute(update(t).where(pending).values(**latest))).rowcount:
                    return
            await conn.execute(insert(t).values(**row))

    async def open_failures(self, org_id: str) -> set[tuple[str, str]]:
        """(object type, Moment id) of the organization's failures not resolved yet."""
        t = self.items
        query = select(t.c.object_type, t.c.moment_id).where(
            t.c.org_id == org_id[:100],
            t.c.kind == FAILURE,
            t.c.resolved_at.is_(None),
            t.c.object_type.is_not(None),
            t.c.moment_id.is_not(None),
        )
        async with self._store.read() as conn:
            return {(row.object_type, row.moment_id) for row in await conn.execute(query)}

    async def resolve(
        self,
        org_id: str,
        object_type: str,
        moment_id: str,
        *,
        moment_number: str | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Record that an object with an open failure succeeded; False when it had none.

        Reads first, so the common case (no failure on record) costs no write transaction.
        """
        t = self.items
        open_failure = and_(
            t.c.org_id == org_id[:100],
            t.c.object_type == object_type[:50],
            t.c.moment_id == moment_id[:200],
            t.c.kind == FAILURE,
            t.c.resolved_at.is_(None),
        )
        async with self._store.read() as conn:
            found = (await conn.execute(select(t.c.id).where(open_failure).limit(1))).first()
        if found is None:
            return False
        at = at or utcnow()
        async with self._store.write() as conn:
            # The UPDATE decides: of two concurrent successes only one sees rows to resolve.
            result = await conn.execute(update(t).where(open_failure).values(resolved_at=at))
            if not result.rowcount:
                return False
            await conn.execute(
                insert(t).values(
                    org_id=org_id[:100],
                    kind=RESOLVED,
                    object_type=object_type[:50],
                    moment_id=moment_id[:200],
                    moment_number=_clip(moment_number, 200),
                    event_id=_clip(event_id, 200),
                    occurred_at=at,
                )
            )
        return True

    # --- what is due -----------------------------------------------------------------------

    async def pending_orgs(self) -> dict[str, tuple[datetime, datetime | None]]:
        """Organizations with pending items: (their oldest item, their last digest)."""
        t, d = self.items, self.digests
        last = (
            select(d.c.org_id, func.max(d.c.created_at).label("last"))
            .group_by(d.c.org_id)
            .subquery()
        )
        pending = (
            select(t.c.org_id, func.min(t.c.occurred_at).label("oldest"))
            .where(t.c.digest_id.is_(None))
            .group_by(t.c.org_id)
            .subquery()
        )
        query = select(pending.c.org_id, pending.c.oldest, last.c.last).join(
            last, last.c.org_id == pending.c.org_id, isouter=True
        )
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row[0]: (_aware(row[1]), _aware(row[2]) if row[2] is not None else None) for row in rows
        }

    async def orgs_with_unsent(self, now: datetime) -> set[str]:
        """Organizations with a digest that is still missing recipients and may be retried."""
        d = self.digests
        query = (
            select(d.c.org_id)
            .where(
                d.c.sent_at.is_(None),
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            )
            .distinct()
        )
        async with self._store.read() as conn:
            return set((await conn.execute(query)).scalars())

    async def last_digest_at(self, org_id: str) -> datetime | None:
        d = self.digests
        async with self._store.read() as conn:
            value = (
                await conn.execute(select(func.max(d.c.created_at)).where(d.c.org_id == org_id))
            ).scalar()
        return _aware(value) if value is not None else None

    # --- claiming and delivering -------------------------------------------------------------

    async def claim(
        self,
        org_id: str,
        recipients: Sequence[Mapping[str, str]],
        *,
        first_delay_s: float,
        window_s: float,
        now: datetime | None = None,
    ) -> int | None:
        """Put the organization's pending items into a new digest, if they are due.

        One transaction: the due check, the digest row and the items' ``digest_id``. Returns
        the digest id, or None when nothing is pending or it is not yet time.
        """
        now = now or utcnow()
        t, d = self.items, self.digests
        async with self._store.write() as conn:
            pending = (
                await conn.execute(
                    select(
                        func.min(t.c.occurred_at),
                        func.max(t.c.id),
                        func.count().filter(t.c.kind == FAILURE),
                        func.count().filter(t.c.kind == RESOLVED),
                    ).where(t.c.org_id == org_id, t.c.digest_id.is_(None))
                )
            ).one()
            oldest, max_id, failures, resolved = pending
            if max_id is None:
                return None
            last = (
                await conn.execute(select(func.max(d.c.created_at)).where(d.c.org_id == org_id))
            ).scalar()
            due = due_at(_aware(oldest), _aware(last) if last else None, first_delay_s, window_s)
            if due > now:
                return None
            digest_id: int = (
                await conn.execute(
                    insert(d)
                    .values(
                        org_id=org_id,
                        created_at=now,
                        window_start=_aware(oldest),
                        window_end=now,
                        failures=failures,
                        resolved=resolved,
                        recipients=[dict(r) for r in recipients],
                        delivered={},
                        attempts=0,
                    )
                    .returning(d.c.id)
                )
            ).scalar_one()
            taken = await conn.execute(
                update(t)
                .where(t.c.org_id == org_id, t.c.digest_id.is_(None), t.c.id <= max_id)
                .values(digest_id=digest_id)
            )
            if not taken.rowcount:
                # Another claim committed first (PostgreSQL re-checks the rows after waiting
                # for its locks): never send an empty digest. Rolling back drops our row.
                await conn.rollback()
                return None
        return digest_id

    async def unsent(self, org_id: str) -> list[DigestRow]:
        """The organization's digests still missing recipients, oldest first."""
        d = self.digests
        query = select(d).where(d.c.org_id == org_id, d.c.sent_at.is_(None)).order_by(d.c.id)
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_digest(row._mapping) for row in rows]

    async def digest(self, digest_id: int) -> DigestRow | None:
        d = self.digests
        async with self._store.read() as conn:
            row = (await conn.execute(select(d).where(d.c.id == digest_id))).first()
        return _digest(row._mapping) if row is not None else None

    async def digest_items(self, digest_id: int) -> list[Item]:
        t = self.items
        query = (
            select(
                t.c.id,
                t.c.kind,
                t.c.code,
                t.c.object_type,
                t.c.moment_id,
                t.c.moment_number,
                t.c.event_id,
                t.c.message,
                t.c.occurred_at,
            )
            .where(t.c.digest_id == digest_id)
            .order_by(t.c.id)
        )
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return [Item(**row._asdict()) for row in rows]

    async def record_attempt(
        self,
        digest_id: int,
        delivered: Mapping[str, str],
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> DigestRow:
        """Merge what was delivered; the digest is sent once every recipient has it.

        ``error`` and ``retry_at`` describe a failed attempt (the missing ones are retried then).
        """
        now = now or utcnow()
        d = self.digests
        async with self._store.write() as conn:
            row = (await conn.execute(select(d).where(d.c.id == digest_id))).one()
            current = _digest(row._mapping)
            merged = {**current.delivered, **delivered}
            done = all(recipient_key(r) in merged for r in current.recipients)
            values: dict[str, Any] = {"delivered": merged}
            if error is not None:
                values.update(
                    attempts=current.attempts + 1,
                    last_error=clean_message(error),
                    next_attempt_at=retry_at,
                )
            if done:
                values.update(sent_at=now, next_attempt_at=None)
            await conn.execute(update(d).where(d.c.id == digest_id).values(**values))
            row = (await conn.execute(select(d).where(d.c.id == digest_id))).one()
        return _digest(row._mapping)

    # --- housekeeping ------------------------------------------------------------------------

    async def purge(self, *, keep_s: float, keep_open_s: float, now: datetime | None = None) -> int:
        """Delete what no digest or resolution needs any more; returns the rows deleted.

        Sent digests older than ``keep_s`` go with their resolutions, warnings and resolved
        failures; a failure never resolved is kept ``keep_open_s`` (its later success is still
        news).
        """
        now = now or utcnow()
        t, d = self.items, self.digests
        old_sent = select(d.c.id).where(
            d.c.sent_at.is_not(None), d.c.sent_at < now - timedelta(seconds=keep_s)
        )
        async with self._store.write() as conn:
            items = await conn.execute(
                delete(t).where(
                    t.c.digest_id.in_(old_sent),
                    or_(
                        t.c.kind.in_((RESOLVED, WARNING, WAITING)),
                        t.c.resolved_at.is_not(None),
                        t.c.occurred_at < now - timedelta(seconds=keep_open_s),
                    ),
                )
            )
            digests = await conn.execute(
                delete(d).where(
                    d.c.id.in_(old_sent),
                    ~select(t.c.id).where(t.c.digest_id == d.c.id).exists(),
                )
            )
        return int(items.rowcount or 0) + int(digests.rowcount or 0)

    # --- status --------------------------------------------------------------------------------

    async def status(self, org_id: str) -> dict[str, Any]:
        """Pending items and the last digest of an organization (JSON-ready)."""
        t, d = self.items, self.digests
        async with self._store.read() as conn:
            oldest, failures, resolved = (
                await conn.execute(
                    select(
                        func.min(t.c.occurred_at),
                        func.count().filter(t.c.kind == FAILURE),
                        func.count().filter(t.c.kind == RESOLVED),
                    ).where(t.c.org_id == org_id, t.c.digest_id.is_(None))
                )
            ).one()
            last = (
                await conn.execute(
                    select(d).where(d.c.org_id == org_id).order_by(d.c.id.desc()).limit(1)
                )
            ).first()
        digest = _digest(last._mapping) if last is not None else None
        return {
            "pending": {
                "failures": int(failures or 0),
                "resolved": int(resolved or 0),
                "oldest_at": _iso(_aware(oldest) if oldest else None),
            },
            "last_digest": None
            if digest is None
            else {
                "id": digest.id,
                "created_at": _iso(digest.created_at),
                "window_start": _iso(digest.window_start),
                "window_end": _iso(digest.window_end),
                "failures": digest.failures,
                "resolved": digest.resolved,
                "recipients": len(digest.recipients),
                "delivered": sum(1 for v in digest.delivered.values() if v == "sent"),
                "refused": sum(1 for v in digest.delivered.values() if v == "refused"),
                "sent_at": _iso(digest.sent_at),
                "attempts": digest.attempts,
                "next_attempt_at": _iso(digest.next_attempt_at),
                "last_error": digest.last_error,
            },
        }


def _aware(value: datetime) -> datetime:
    # Aggregates (MIN/MAX) bypass the column type on SQLite and come back as text or naive.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _digest(row: Any) -> DigestRow:
    return DigestRow(
        id=row["id"],
        org_id=row["org_id"],
        created_at=row["created_at"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        failures=row["failures"],
        resolved=row["resolved"],
        recipients=list(row["recipients"] or []),
        delivered=dict(row["delivered"] or {}),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        sent_at=row["sent_at"],
    )
