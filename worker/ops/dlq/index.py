"""The dead-letter index: one row per dead letter in the store, so the console counts, groups
and pages dead letters with SQL instead of reading the queue on every request.

Written when a dead letter is published (:class:`DeadLetterIndexer`, one of the consumer's
observers: it runs after the broker confirmed the dead letter and before the original is
acked), and by the operations that move dead letters (replay forgets them, archive and restore
flip ``archived``). The queue stays the truth: :meth:`DeadLetterIndex.reconcile` rebuilds the
rows from a full read of the dead-letter and archive queues (``worker.ops.dlq.runs``
runs it in the background when the counts disagree). How it stays right after a crash:

- between the dead-letter publish and the index write: the original was not acked, so it is
  delivered again and dead-lettered again (indexed then); and the count check finds the queue
  deeper than the index and reconciles;
- an operation that crashed half way: what it moved is no longer where the index says; the
  count check sees the difference and reconciles. A reconcile only removes rows indexed before
  it started, so a dead letter that arrives during the read is never dropped from the index.

Notes on a group (``dead_letter_notes``) live here too: one free text per group.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)

from worker.events.handlers import FailureReport, Observer
from worker.messaging import headers as H
from worker.ops.dlq.model import DeadLetter, FilterError
from worker.store import JsonType, UtcDateTime, metadata, utcnow

if TYPE_CHECKING:
    from worker.store import Store

log = structlog.get_logger(__name__)

# A body larger than this is not copied into the index (the message page then says how to read
# it from the queue: ``bc-sync dlq show``).
DETAIL_BODY_MAX = 64 * 1024
MESSAGE_MAX = 1000
# Rows per statement when many change at once (replay, reconcile).
BATCH = 500

dead_letter_index = Table(
    "dead_letter_index",
    metadata,
    Column("id", String(200), primary_key=True),  # DeadLetter.id: event id, else body hash
    Column("event_id", String(200)),
    Column("org_id", String(100)),
    Column("event_type", String(100)),
    Column("subject", String(200)),
    Column("code", String(100), nullable=False),
    Column("error_class", String(30), nullable=False),
    Column("message", Text),
    Column("attempts", Integer),
    Column("first_failure", UtcDateTime),
    Column("last_failure", UtcDateTime),
    Column("copies", Integer, nullable=False, default=1),
    Column("archived", Boolean, nullable=False, default=False),
    Column("archived_at", UtcDateTime),
    Column("archived_by", String(200)),
    Column("archive_reason", Text),
    Column("indexed_at", UtcDateTime, nullable=False),
    Index("ix_dead_letter_index_code", "archived", "code", "last_failure"),
    Index("ix_dead_letter_index_org", "archived", "org_id", "last_failure"),
    Index("ix_dead_letter_index_type", "archived", "event_type", "last_failure"),
    Index("ix_dead_letter_index_last", "archived", "last_failure"),
)

# DeadLetter.detail() of each row (redacted), in its own table so the index rows stay small.
dead_letter_details = Table(
    "dead_letter_details",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("detail", JsonType, nullable=False),
)

dead_letter_notes = Table(
    "dead_letter_notes",
    metadata,
    Column("group_by", String(10), primary_key=True),
    Column("group_key", String(200), primary_key=True),
    Column("note", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# group_by name (as `dlq list --group-by` takes it) → column.
GROUP_COLUMNS = {
    "code": dead_letter_index.c.code,
    "org": dead_letter_index.c.org_id,
    "type": dead_letter_index.c.event_type,
}
NONE_KEY = "(none)"  # the group of dead letters without an organization / type


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value


def letter_detail(letter: DeadLetter) -> dict[str, Any]:
    """What the message page shows (``dlq show``'s view, redacted), bounded in size."""
    if len(letter.body) > DETAIL_BODY_MAX:
        shallow = DeadLetter.from_message(
            b"", letter.headers, content_type=letter.content_type, message_id=letter.message_id
        )
        detail = shallow.detail()
        detail["summary"] = letter.row()
        detail["body"] = None
        detail["body_too_large"] = len(letter.body)
        return detail
    return letter.detail()


def row_values(
    letter: DeadLetter, *, archived: bool, copies: int = 1, at: datetime | None = None
) -> dict[str, Any]:
    """The index row of one dead letter (``archived``: it sits in the archive queue)."""
    facts = H.read_archive(letter.headers) if archived else H.ArchiveHeaders(None, None, None)
    detail = json.loads(json.dumps(letter_detail(letter), default=str))
    return {
        "id": letter.id[:200],
        "event_id": _clip(letter.event_id, 200),
        "org_id": _clip(letter.org, 100),
        "event_type": _clip(letter.type, 100),
        "subject": _clip(letter.subject, 200),
        "code": letter.code[:100],
        "error_class": letter.error_class[:30],
        "message": letter.row()["message"][:MESSAGE_MAX] if letter.message else None,
        "attempts": letter.attempts,
        "first_failure": letter.first_failure,
        "last_failure": letter.last_failure,
        "copies": copies,
        "archived": archived,
        "archived_at": facts.at,
        "archived_by": _clip(facts.by, 200),
        "archive_reason": facts.reason,
        "indexed_at": at or utcnow(),
        "detail": detail,
    }


@dataclass(frozen=True)
class Query:
    """Which index rows a page shows: ``archived`` ones or the active ones, narrowed by
    organization, event type, error code (exact), and ``text`` (part of the subject, the id or
    the organization)."""

    archived: bool = False
    org: str | None = None
    type: str | None = None
    code: str | None = None
    text: str | None = None

    def where(self) -> ColumnElement[bool]:
        t = dead_letter_index
        clauses: list[ColumnElement[bool]] = [t.c.archived.is_(self.archived)]
        for value, column in ((self.org, t.c.org_id), (self.type, t.c.event_type)):
            if value == NONE_KEY:
                clauses.append(column.is_(None))
            elif value:
                clauses.append(column == value)
        if self.code:
            clauses.append(t.c.code == self.code)
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern += "%"
            clauses.append(
                or_(
                    t.c.subject.ilike(pattern, escape="\\"),
                    t.c.id.ilike(pattern, escape="\\"),
                    t.c.org_id.ilike(pattern, escape="\\"),
                )
            )
        return and_(*clauses)

    def group(self, by: str, key: str) -> Query:
        """This query narrowed to one group (``by`` = code, org or type)."""
        if by == "code":
            return Query(self.archived, self.org, self.type, key, self.text)
        if by == "org":
            return Query(self.archived, key, self.type, self.code, self.text)
        if by == "type":
            return Query(self.archived, self.org, key, self.code, self.text)
        raise FilterError("group_by", "must be one of code, org, type")


@dataclass(frozen=True)
class Group:
    key: str
    count: int
    first_failure: datetime | None
    last_failure: datetime | None
    organizations: int


@dataclass(frozen=True)
class Row:
    id: str
    event_id: str | None
    org_id: str | None
    event_type: str | None
    subject: str | None
    code: str
    error_class: str
    message: str | None
    attempts: int | None
    first_failure: datetime | None
    last_failure: datetime | None
    copies: int
    archived: bool
    archived_at: datetime | None
    archived_by: str | None
    archive_reason: str | None


@dataclass(frozen=True)
class Note:
    text: str
    author: str
    updated_at: datetime


_ROW_COLUMNS = [dead_letter_index.c[name] for name in Row.__dataclass_fields__]


class DeadLetterIndex:
    """Queries on ``dead_letter_index`` and ``dead_letter_notes``."""

    table = dead_letter_index
    details = dead_letter_details
    notes = dead_letter_notes

    def __init__(self, store: Store) -> None:
        self._store = store

    # --- writing ---------------------------------------------------------------------------

    async def add(self, letter: DeadLetter, *, archived: bool = False) -> None:
        """Index a dead letter just published (a newer failure of the same id replaces it)."""
        values = row_values(letter, archived=archived)
        async with self._store.write() as conn:
            await self._write_row(conn, values, keep_copies=True)

    async def _write_row(self, conn: Any, values: dict[str, Any], *, keep_copies: bool) -> None:
        row = {k: v for k, v in values.items() if k != "detail"}
        columns = [c for c in row if c != "id" and not (keep_copies and c == "copies")]
        await conn.execute(self._store.upsert(self.table, row, ["id"], columns))
        await conn.execute(
            self._store.upsert(
                self.details, {"id": row["id"], "detail": values["detail"]}, ["id"], ["detail"]
            )
        )

    async def forget(self, ids: Iterable[str], *, indexed_before: datetime) -> int:
        """Remove the rows of dead letters that left the queues (replayed), unless the row was
        written after ``indexed_before``: then the replayed event already failed again."""
        removed = 0
        t, d = self.table, self.details
        for chunk in _chunks(list(ids)):
            async with self._store.write() as conn:
                result = await conn.execute(
                    delete(t).where(t.c.id.in_(chunk), t.c.indexed_at < indexed_before)
                )
                await conn.execute(
                    delete(d).where(d.c.id.in_(chunk), d.c.id.not_in(select(t.c.id)))
                )
            removed += result.rowcount or 0
        return removed

    async def mark_archived(
        self, ids: Iterable[str], *, by: str, reason: str, at: datetime | None = None
    ) -> None:
        when = at or utcnow()
        for chunk in _chunks(list(ids)):
            async with self._store.write() as conn:
                await conn.execute(
                    update(self.table)
                    .where(self.table.c.id.in_(chunk))
                    .values(
                        archived=True, archived_at=when, archived_by=by[:200], archive_reason=reason
                    )
                )

    async def mark_active(self, ids: Iterable[str]) -> None:
        for chunk in _chunks(list(ids)):
            async with self._store.write() as conn:
                await conn.execute(
                    update(self.table)
                    .where(self.table.c.id.in_(chunk))
                    .values(archived=False, archived_at=None, archived_by=None, archive_reason=None)
                )

    async def reconcile(
        self,
        dead: Sequence[DeadLetter],
        archived: Sequence[DeadLetter],
        *,
        started: datetime,
    ) -> dict[str, int]:
        """Make the index match a full read of both queues (taken after ``started``).

        Rows of dead letters the read did not see are removed only when they were indexed
        before ``started`` (one indexed meanwhile may have arrived after the read passed)."""
        seen: dict[str, tuple[DeadLetter, bool, int]] = {}
        for letters, is_archived in ((dead, False), (archived, True)):
            for letter in letters:
                key = letter.id[:200]
                previous = seen.get(key)
                copies = 1 if previous is None else previous[2] + 1
                seen[key] = (letter, is_archived, copies)
        t = self.table
        async with self._store.read() as conn:
            current = {
                row.id: row
                for row in await conn.execute(
                    select(t.c.id, t.c.archived, t.c.copies, t.c.last_failure, t.c.indexed_at)
                )
            }
        changed = [
            row_values(letter, archived=is_archived, copies=copies)
            for key, (letter, is_archived, copies) in seen.items()
            if key not in current
            or bool(current[key].archived) != is_archived
            or current[key].copies != copies
            or current[key].last_failure != letter.last_failure
        ]
        gone = [k for k, row in current.items() if k not in seen and row.indexed_at < started]
        for chunk in _chunks(changed, 200):
            async with self._store.write() as conn:
                for values in chunk:
                    await self._write_row(conn, values, keep_copies=False)
        d = self.details
        for ids in _chunks(gone):
            async with self._store.write() as conn:
                await conn.execute(delete(t).where(t.c.id.in_(ids), t.c.indexed_at < started))
                await conn.execute(delete(d).where(d.c.id.in_(ids), d.c.id.not_in(select(t.c.id))))
        added = sum(1 for v in changed if v["id"] not in current)
        return {"added": added, "updated": len(changed) - added, "removed": len(gone)}

    # --- reading ---------------------------------------------------------------------------

    async def totals(self) -> tuple[int, int]:
        """(active, archived) dead letters (distinct ids; see :meth:`depths` for copies)."""
        t = self.table
        async with self._store.read() as conn:
            rows = (
                await conn.execute(select(t.c.archived, func.count()).group_by(t.c.archived))
            ).all()
        counts = {bool(row[0]): int(row[1]) for row in rows}
        return counts.get(False, 0), counts.get(True, 0)

    async def depths(self) -> tuple[int, int]:
        """(active, archived) messages the queues should hold: every copy counted."""
        t = self.table
        async with self._store.read() as conn:
            rows = (
                await conn.execute(
                    select(t.c.archived, func.coalesce(func.sum(t.c.copies), 0)).group_by(
                        t.c.archived
                    )
                )
            ).all()
        counts = {bool(row[0]): int(row[1]) for row in rows}
        return counts.get(False, 0), counts.get(True, 0)

    async def groups(self, by: str, query: Query | None = None) -> list[Group]:
        """Counts per ``by`` (code, org or type) with the first and last failure, largest
        first."""
        column = GROUP_COLUMNS.get(by)
        if column is None:
            raise FilterError("group_by", "must be one of code, org, type")
        t = self.table
        stmt = (
            select(
                column.label("key"),
                func.count().label("n"),
                func.min(t.c.first_failure),
                func.max(t.c.last_failure),
                func.count(func.distinct(t.c.org_id)),
            )
            .where((query or Query()).where())
            .group_by(column)
            .order_by(func.count().desc(), column)
        )
        async with self._store.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            Group(row[0] or NONE_KEY, int(row[1]), _aware(row[2]), _aware(row[3]), int(row[4]))
            for row in rows
        ]

    async def count(self, query: Query) -> int:
        async with self._store.read() as conn:
            value = await conn.scalar(
                select(func.count()).select_from(self.table).where(query.where())
            )
        return int(value or 0)

    async def page(self, query: Query, *, offset: int = 0, limit: int = 50) -> list[Row]:
        """Dead letters matching ``query``, newest failure first."""
        t = self.table
        stmt = (
            select(*_ROW_COLUMNS)
            .where(query.where())
            .order_by(t.c.last_failure.desc(), t.c.id)
            .offset(max(0, offset))
            .limit(max(1, limit))
        )
        async with self._store.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Row(**row._asdict()) for row in rows]

    async def ids(self, query: Query, *, limit: int) -> list[str]:
        t = self.table
        async with self._store.read() as conn:
            return list(
                (await conn.execute(select(t.c.id).where(query.where()).limit(limit))).scalars()
            )

    async def get(self, letter_id: str) -> tuple[Row, dict[str, Any] | None] | None:
        """One row and its stored detail (``dlq show``'s view), or None."""
        t, d = self.table, self.details
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    select(*_ROW_COLUMNS, d.c.detail)
                    .select_from(t.outerjoin(d, d.c.id == t.c.id))
                    .where(t.c.id == letter_id)
                )
            ).first()
        if row is None:
            return None
        values = row._asdict()
        detail = values.pop("detail")
        if isinstance(detail, str):  # SQLite returns JSON text from a TEXT column
            detail = json.loads(detail)
        return Row(**values), detail

    async def by_org(self) -> dict[str, int]:
        """Active dead letters per organization."""
        t = self.table
        async with self._store.read() as conn:
            rows = (
                await conn.execute(
                    select(t.c.org_id, func.count())
                    .where(t.c.archived.is_(False))
                    .group_by(t.c.org_id)
                )
            ).all()
        return {str(row[0] or NONE_KEY): int(row[1]) for row in rows}

    # --- notes -----------------------------------------------------------------------------

    async def note(self, by: str, key: str) -> Note | None:
        n = self.notes
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    select(n.c.note, n.c.author, n.c.updated_at).where(
                        n.c.group_by == by, n.c.group_key == key[:200]
                    )
                )
            ).first()
        return None if row is None else Note(row.note, row.author, row.updated_at)

    async def notes_for(self, by: str) -> dict[str, Note]:
        n = self.notes
        async with self._store.read() as conn:
            rows = (
                await conn.execute(
                    select(n.c.group_key, n.c.note, n.c.author, n.c.updated_at).where(
                        n.c.group_by == by
                    )
                )
            ).all()
        return {row.group_key: Note(row.note, row.author, row.updated_at) for row in rows}

    async def set_note(self, by: str, key: str, text: str, *, author: str) -> None:
        """Write (or, with empty text, remove) the note of a group."""
        n = self.notes
        async with self._store.write() as conn:
            if not text.strip():
                await conn.execute(delete(n).where(n.c.group_by == by, n.c.group_key == key[:200]))
                return
            values = {
                "group_by": by,
                "group_key": key[:200],
                "note": text,
                "author": author[:200],
                "updated_at": utcnow(),
            }
            await conn.execute(
                self._store.upsert(
                    n, values, ["group_by", "group_key"], ["note", "author", "updated_at"]
                )
            )


def _aware(value: datetime | str | None) -> datetime | None:
    """Aggregates bypass the column type on SQLite (text): read them back as UTC datetimes."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _chunks(items: Sequence[Any], size: int = BATCH) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class DeadLetterIndexer(Observer):
    """Indexes each dead letter the consumer publishes (after the broker confirmed it)."""

    def __init__(self, index: DeadLetterIndex) -> None:
        self.index = index

    async def on_failure(self, report: FailureReport) -> None:
        copy = report.dead_letter
        if not report.final or copy is None:
            return
        letter = DeadLetter.from_message(
            copy.body, copy.headers, content_type=copy.content_type, message_id=copy.message_id
        )
        await self.index.add(letter)
