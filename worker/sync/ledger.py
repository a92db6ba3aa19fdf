"""The sync ledger: one row per Moment object (organization, object type, Moment id) with its
state, BC id and number, the last change applied to BC, and a bounded history of steps.

Newest change wins (DESIGN §5). Every event for an object has an **order key**:

1. the CloudEvents ``time`` (UTC; an event without one sorts before every event with one),
2. then the optional CloudEvents extension attribute ``sequence``: a string of 1 to 30 digits,
   compared as an integer (an event without it sorts before one with it at the same time),
3. then the event ``id``, compared as a string (code point order): the deterministic tie-break.

An event whose key is lower than the key of the change already applied to the object is
*superseded*: acked, counted, written to the history, never sent to BC. The same event again
(a redelivery, a replay of the very event that was applied: the same ``id``) is applied again
(BC writes are idempotent).

The check and the "last applied" mark are atomic per object against other workers: a worker
first *claims* the row (one ``INSERT … ON CONFLICT DO UPDATE … RETURNING``, which also tells
it the applied key), does the BC work, then marks the outcome and releases the claim in one
``UPDATE … WHERE claim_owner = me``. A second worker meanwhile sees the claim and retries
later (``BC-BUSY``, the retry ladder), and is then superseded or applied in order.

The row's ``state`` describes the newest change received (``newest_key``): a success or
failure of an older change is written to the history but never changes the state.

Keys are strings built so that byte order is the order above (the numeric part has a fixed
width); the PostgreSQL columns use the ``C`` collation, SQLite compares bytes by default.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Literal, get_args

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from worker.events.envelope import Event
from worker.events.models import line_amount
from worker.log import redact_text
from worker.store.group_commit import GroupCommit
from worker.store.migrations import UtcDateTime, metadata

if TYPE_CHECKING:
    from worker.store import Store

State = Literal["pending", "retrying", "synced", "failed", "skipped", "waiting"]
STATES: tuple[str, ...] = get_args(State)
# States Moment hears about in ``bc.sync.status`` (synced only after failed or waiting).
ANNOUNCED: frozenset[str] = frozenset({"failed", "waiting", "synced"})
OBJECT_TYPES: tuple[str, ...] = ("customer", "project", "invoice", "credit_note")

KEY_MAX = 300
SEQUENCE_DIGITS = 30
MESSAGE_MAX = 500
DETAIL_MAX = 500
HISTORY_LIMIT = 50  # steps shown per object, and kept per object by the retention job
PAGE_MAX = 500
PAGE_DEFAULT = 50

_Id = BigInteger().with_variant(Integer, "sqlite")

sync_ledger = Table(
    "sync_ledger",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("moment_id", String(200), primary_key=True),
    Column("object_type", String(30), primary_key=True),
    Column("moment_number", String(200)),
    Column("state", String(20), nullable=False),
    Column("bc_id", String(100)),
    Column("bc_number", String(100)),
    # The newest change received (the state describes it) and the last one applied to BC.
    Column("newest_key", String(KEY_MAX)),
    Column("newest_event_id", String(200)),
    Column("applied_key", String(KEY_MAX)),
    Column("applied_event_id", String(200)),
    Column("applied_event_time", UtcDateTime),
    Column("applied_sequence", String(40)),
    Column("attempts", Integer, nullable=False),  # deliveries of the newest change so far
    Column("last_error_code", String(100)),
    Column("last_error_message", Text),
    # The last state announced to Moment in bc.sync.status (one event per change).
    Column("published_state", String(20)),
    Column("claim_owner", String(100)),
    Column("claim_expires_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Invoices and credit notes, for the reconciliation (worker/ops/reconcile.py): set from the
    # newest change received, and the totals/currency BC answered when it was exported.
    Column("document_date", String(10)),  # the Moment invoice date (ISO), BC's posting date
    Column("customer_number", String(100)),
    Column("currency_code", String(10)),
    Column("total_excluding_tax", String(40)),  # decimal text; positive for a credit note
    Column("total_including_tax", String(40)),  # as BC answered at the export
)

# An object, where it stands and its BC record: what every reader of a ledger row takes.
_OBJECT_COLUMNS = ("object_type", "moment_id", "moment_number", "state", "bc_id", "bc_number")

# What the reconciliation reads of a ledger row.
_DOCUMENT_READ = (
    *_OBJECT_COLUMNS,
    "last_error_code",
    "last_error_message",
    "document_date",
    "customer_number",
    "currency_code",
    "total_excluding_tax",
    "total_including_tax",
)

# The received columns of an invoice or credit note (``document_facts``), set at the claim.
DOCUMENT_COLUMNS = ("document_date", "customer_number", "currency_code", "total_excluding_tax")

sync_ledger_steps = Table(
    "sync_ledger_steps",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("org_id", String(100), nullable=False),
    Column("object_type", String(30), nullable=False),
    Column("moment_id", String(200), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("step", String(40), nullable=False),
    Column("event_id", String(200)),
    Column("attempt", Integer),
    Column("code", String(100)),
    Column("detail", Text),
)

# --- order keys ------------------------------------------------------------------------------


def order_key(time: datetime | None, sequence: str | None, event_id: str) -> str:
    """The sortable key of a change: ``time``, then ``sequence`` (as an integer), then the id.

    Fixed-width digits first, so comparing the strings byte by byte is comparing the triples.
    """
    if time is None:
        stamp = "0" * 20
    else:
        t = time.astimezone(UTC) if time.tzinfo else time.replace(tzinfo=UTC)
        stamp = (
            f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"
            f"{t.microsecond:06d}"
        )
    seq = "0" * (SEQUENCE_DIGITS + 1) if sequence is None else "1" + sequence_digits(sequence)
    return f"{stamp}{seq}|{event_id}"[:KEY_MAX]


def sequence_digits(sequence: str) -> str:
    """The ``sequence`` extension as fixed-width digits (its integer value, zero-padded)."""
    return str(int(sequence)).zfill(SEQUENCE_DIGITS)


def event_sequence(event: Event[Any]) -> str | None:
    """The event's ``sequence`` extension (validated by the envelope), or None."""
    value = getattr(event.envelope, "sequence", None)
    return value if isinstance(value, str) and value else None


def event_key(event: Event[Any]) -> str:
    return order_key(event.envelope.time, event_sequence(event), event.id)


def document_facts(event: Event[Any]) -> dict[str, str | None] | None:
    """What the reconciliation compares of an invoice or credit note event (None for other
    objects): its date (BC's posting date), customer number and currency as the export sends
    them (upper-cased), and its total excluding tax as BC will show it: each line rounded to
    cents, a credit note's sign turned (BC shows a credit memo's total positive)."""
    invoice = getattr(event.data, "invoice", None)
    if invoice is None:
        return None
    cent = Decimal("0.01")
    total = sum(
        (line_amount(line).quantize(cent, ROUND_HALF_UP) for line in invoice.lines), Decimal(0)
    )
    if invoice.is_credit_note:
        total = -total
    return {
        "document_date": invoice.invoice_date.isoformat(),
        "customer_number": invoice.customer.number.strip().upper()[:100],
        "currency_code": (invoice.currency_code or "").strip().upper()[:10] or None,
        "total_excluding_tax": str(total.quantize(cent)),
    }


def superseded(
    key: str, event_id: str, applied_key: str | None, applied_event_id: str | None
) -> bool:
    """True when a change with ``key`` is older than the one already applied. The applied
    event itself again (a redelivery, a replay, a copy Moment sent twice) is never superseded."""
    return applied_key is not None and key < applied_key and event_id[:200] != applied_event_id


def clean(message: str | None, limit: int = MESSAGE_MAX) -> str:
    """One line, no secrets, no stack trace, bounded (as the notification digest shows it)."""
    text = (message or "").split("Traceback (most recent call last)", 1)[0]
    text = " ".join(text.split())
    return redact_text(text)[:limit]


# --- rows --------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class LedgerEntry:
    """One object as the integration log shows it."""

    org_id: str
    object_type: str
    moment_id: str
    moment_number: str | None
    state: str
    bc_id: str | None
    bc_number: str | None
    applied_event_id: str | None
    applied_event_time: datetime | None
    applied_sequence: str | None
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "object_type": self.object_type,
            "moment_id": self.moment_id,
            "moment_number": self.moment_number,
            "state": self.state,
            "bc_id": self.bc_id,
            "bc_number": self.bc_number,
            "attempts": self.attempts,
            "error": None
            if self.last_error_code is None
            else {"code": self.last_error_code, "message": self.last_error_message},
            "applied_event": None
            if self.applied_event_id is None
            else {
                "id": self.applied_event_id,
                "time": _iso(self.applied_event_time),
                "sequence": self.applied_sequence,
            },
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class StepEntry:
    """One step of an object's history."""

    at: datetime
    step: str
    event_id: str | None
    attempt: int | None
    code: str | None
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "step": self.step,
            "event_id": self.event_id,
            "attempt": self.attempt,
            "code": self.code,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ClaimResult:
    """What a claim found: whether we hold the row, and the newest-wins facts."""

    acquired: bool
    superseded: bool
    newest: bool  # this event is the newest change received for the object
    applied_event_id: str | None
    published_state: str | None


_ENTRY_COLUMNS = (
    "org_id",
    *_OBJECT_COLUMNS,
    "applied_event_id",
    "applied_event_time",
    "applied_sequence",
    "attempts",
    "last_error_code",
    "last_error_message",
    "created_at",
    "updated_at",
)


def _entry(row: Any) -> LedgerEntry:
    m = row._mapping
    return LedgerEntry(**{name: m[name] for name in _ENTRY_COLUMNS})


# --- filters of the log ------------------------------------------------------------------------


class LogFilterError(ValueError):
    """A filter of the integration log is not valid; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the last row of this one (newest first)."""

    updated_at: datetime
    object_type: str
    moment_id: str

    def encode(self) -> str:
        raw = json.dumps([_iso(self.updated_at), self.object_type, self.moment_id])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            at, object_type, moment_id = raw
            when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
            if not isinstance(object_type, str) or not isinstance(moment_id, str):
                raise TypeError
        except (ValueError, TypeError):
            raise LogFilterError("cursor", "is not a cursor this API returned") from None
        return cls(when if when.tzinfo else when.replace(tzinfo=UTC), object_type, moment_id)


@dataclass(frozen=True)
class LogFilters:
    """Filters of the integration log: type, state, number (or Moment id), changed since."""

    object_type: str | None = None
    state: str | None = None
    number: str | None = None
    since: datetime | None = None
    limit: int = PAGE_DEFAULT
    cursor: Cursor | None = None

    @classmethod
    def parse(
        cls,
        *,
        type: str | None = None,
        state: str | None = None,
        number: str | None = None,
        since: datetime | None = None,
        limit: str | int | None = None,
        cursor: str | None = None,
    ) -> LogFilters:
        """From user input (API query, CLI flags); raises :class:`LogFilterError`."""
        if type and type not in OBJECT_TYPES:
            raise LogFilterError("type", f"must be one of {', '.join(OBJECT_TYPES)}")
        if state and state not in STATES:
            raise LogFilterError("state", f"must be one of {', '.join(STATES)}")
        if number is not None and len(number) > 200:
            raise LogFilterError("number", "is longer than 200 characters")
        count = PAGE_DEFAULT
        if limit is not None and limit != "":
            try:
                count = int(limit)
            except (TypeError, ValueError):
                raise LogFilterError("limit", f"must be a whole number, got {limit!r}") from None
            if not 1 <= count <= PAGE_MAX:
                raise LogFilterError("limit", f"must be between 1 and {PAGE_MAX}")
        return cls(
            object_type=type or None,
            state=state or None,
            number=number or None,
            since=since,
            limit=count,
            cursor=Cursor.decode(cursor) if cursor else None,
        )


# --- the repository ----------------------------------------------------------------------------


def _pk(org_id: str, object_type: str, moment_id: str) -> ColumnElement[bool]:
    t = sync_ledger
    return and_(
        t.c.org_id == org_id[:100],
        t.c.moment_id == moment_id[:200],
        t.c.object_type == object_type[:30],
    )


def _when(condition: ColumnElement[bool], value: Any, current: Any) -> Any:
    return case((condition, value), else_=current)


@dataclass(frozen=True)
class Applied:
    """The change a success applied to BC (absent for a skip: nothing reached BC)."""

    key: str
    event_id: str
    time: datetime | None
    sequence: str | None


def _p(name: str, column: str | None = None) -> Any:
    """A bind parameter typed like its column (datetimes become UTC on every dialect)."""
    return bindparam(name, type_=sync_ledger.c[column or name].type)


class _Statements:
    """The hot path's statements, built once per dialect with bind parameters: building a
    SQLAlchemy statement and its cache key per event cost ~2 ms of CPU (make bench)."""

    def __init__(self, dialect: str) -> None:
        t = sync_ledger
        pk = and_(
            t.c.org_id == _p("k_org", "org_id"),
            t.c.moment_id == _p("k_moment", "moment_id"),
            t.c.object_type == _p("k_type", "object_type"),
        )
        ours = and_(pk, t.c.claim_owner == _p("k_owner", "claim_owner"))
        insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
        columns = (
            "org_id",
            "moment_id",
            "object_type",
            "moment_number",
            "state",
            "newest_key",
            "newest_event_id",
            "attempts",
            "claim_owner",
            "claim_expires_at",
            "created_at",
            "updated_at",
            *DOCUMENT_COLUMNS,
        )
        ins = insert_(t).values({name: _p(name) for name in columns})
        new = ins.excluded
        free = or_(t.c.claim_owner.is_(None), t.c.claim_expires_at < new.updated_at)
        newest = or_(t.c.newest_key.is_(None), new.newest_key >= t.c.newest_key)
        self.claim = ins.on_conflict_do_update(
            index_elements=["org_id", "moment_id", "object_type"],
            set_={
                "claim_owner": _when(free, new.claim_owner, t.c.claim_owner),
                "claim_expires_at": _when(free, new.claim_expires_at, t.c.claim_expires_at),
                "newest_key": _when(newest, new.newest_key, t.c.newest_key),
                "newest_event_id": _when(newest, new.newest_event_id, t.c.newest_event_id),
                "state": _when(newest, new.state, t.c.state),
                "attempts": _when(newest, new.attempts, t.c.attempts),
                "moment_number": _when(
                    and_(newest, new.moment_number.is_not(None)),
                    new.moment_number,
                    t.c.moment_number,
                ),
                "updated_at": _when(newest, new.updated_at, t.c.updated_at),
                **{
                    name: _when(and_(newest, new[name].is_not(None)), new[name], t.c[name])
                    for name in DOCUMENT_COLUMNS
                },
            },
        ).returning(
            t.c.claim_owner,
            t.c.newest_event_id,
            t.c.applied_key,
            t.c.applied_event_id,
            t.c.published_state,
        )
        mine = t.c.newest_event_id == _p("event_id", "newest_event_id")
        outcome = {
            "state": _when(mine, _p("new_state", "state"), t.c.state),
            "last_error_code": _when(mine, None, t.c.last_error_code),
            "last_error_message": _when(mine, None, t.c.last_error_message),
            "bc_id": func.coalesce(_p("v_bc_id", "bc_id"), t.c.bc_id),
            "bc_number": func.coalesce(_p("v_bc_number", "bc_number"), t.c.bc_number),
            "total_including_tax": func.coalesce(
                _p("v_total_incl", "total_including_tax"), t.c.total_including_tax
            ),
            "currency_code": func.coalesce(_p("v_currency", "currency_code"), t.c.currency_code),
            "published_state": func.coalesce(
                _p("published", "published_state"), t.c.published_state
            ),
            "claim_owner": None,
            "claim_expires_at": None,
            "updated_at": _when(mine, _p("now", "updated_at"), t.c.updated_at),
        }
        forward = or_(t.c.applied_key.is_(None), t.c.applied_key <= _p("key", "applied_key"))
        applied = {
            "applied_key": _when(forward, _p("key", "applied_key"), t.c.applied_key),
            "applied_event_id": _when(
                forward, _p("applied_id", "applied_event_id"), t.c.applied_event_id
            ),
            "applied_event_time": _when(
                forward, _p("applied_time", "applied_event_time"), t.c.applied_event_time
            ),
            "applied_sequence": _when(
                forward, _p("v_sequence", "applied_sequence"), t.c.applied_sequence
            ),
        }
        self.finish = update(t).where(ours).values(**outcome)
        self.finish_applied = update(t).where(ours).values(**outcome, **applied)
        self.release = update(t).where(ours).values(claim_owner=None, claim_expires_at=None)
        expires = _p("expires", "claim_expires_at")
        self.extend = update(t).where(ours).values(claim_expires_at=expires)
        # A durable failure (retry scheduled, dead-lettered): only the newest change's state.
        self.failure = (
            update(t)
            .where(pk, mine)
            .values(
                state=_p("new_state", "state"),
                attempts=_p("v_attempts", "attempts"),
                last_error_code=_p("code", "last_error_code"),
                last_error_message=_p("message", "last_error_message"),
                updated_at=_p("now", "updated_at"),
            )
            .returning(*(t.c[name] for name in _ENTRY_COLUMNS), t.c.published_state)
        )
        self.release_failed = (
            update(t)
            .where(ours)
            .values(
                claim_owner=None,
                claim_expires_at=None,
                state=_when(mine, _p("new_state", "state"), t.c.state),
                last_error_code=_when(mine, _p("code", "last_error_code"), t.c.last_error_code),
                last_error_message=_when(
                    mine, _p("message", "last_error_message"), t.c.last_error_message
                ),
                updated_at=_when(mine, _p("now", "updated_at"), t.c.updated_at),
            )
        )


def _row_key(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The primary key a hot-path statement writes (claims name it by column, the others
    with ``k_`` parameters)."""
    return (
        str(params.get("org_id", params.get("k_org", ""))),
        str(params.get("moment_id", params.get("k_moment", ""))),
        str(params.get("object_type", params.get("k_type", ""))),
    )


def _keys(org_id: str, object_type: str, moment_id: str, owner: str) -> dict[str, Any]:
    return {
        "k_org": org_id[:100],
        "k_moment": moment_id[:200],
        "k_type": object_type[:30],
        "k_owner": owner,
    }


class LedgerRepository:
    """Queries on ``sync_ledger`` and ``sync_ledger_steps``."""

    table = sync_ledger
    steps = sync_ledger_steps
    _statements: dict[str, _Statements] = {}

    def __init__(self, store: Store) -> None:
        self._store = store
        found = self._statements.get(store.dialect)
        if found is None:
            found = self._statements[store.dialect] = _Statements(store.dialect)
        self._sql = found
        self._writes = GroupCommit(store, _row_key)

    # --- the hot path ------------------------------------------------------------------------

    async def claim(
        self,
        org_id: str,
        object_type: str,
        moment_id: str,
        *,
        moment_number: str | None,
        key: str,
        event_id: str,
        attempt: int,
        owner: str,
        ttl_s: float,
        now: datetime,
        document: Mapping[str, str | None] | None = None,
    ) -> ClaimResult:
        """Claim the object's row (creating it), record the change as received, and say
        whether it is superseded. One statement: atomic against other workers.

        ``document`` (:func:`document_facts`): an invoice's or credit note's date, customer,
        currency and total, kept for the reconciliation."""
        params = {
            "org_id": org_id[:100],
            "moment_id": moment_id[:200],
            "object_type": object_type[:30],
            "moment_number": (moment_number or None) and moment_number[:200],
            "state": "pending",
            "newest_key": key,
            "newest_event_id": event_id[:200],
            "attempts": attempt,
            "claim_owner": owner,
            "claim_expires_at": now + timedelta(seconds=ttl_s),
            "created_at": now,
            "updated_at": now,
            **{name: (document or {}).get(name) for name in DOCUMENT_COLUMNS},
        }
        row = await self._writes.run(self._sql.claim, params, returning=True)
        assert row is not None, "an upsert always returns its row"
        return ClaimResult(
            acquired=row.claim_owner == owner,
            superseded=superseded(key, event_id, row.applied_key, row.applied_event_id),
            newest=row.newest_event_id == event_id[:200],
            applied_event_id=row.applied_event_id,
            published_state=row.published_state,
        )

    async def finish(
        self,
        org_id: str,
        object_type: str,
        moment_id: str,
        *,
        owner: str,
        event_id: str,
        state: str,
        applied: Applied | None,
        bc_id: str | None = None,
        bc_number: str | None = None,
        published_state: str | None = None,
        total_including_tax: str | None = None,
        currency_code: str | None = None,
        now: datetime,
    ) -> bool:
        """Mark the outcome of the change we claimed for, and release the claim (one statement).

        The state changes only when this event is still the object's newest change; the
        applied key only moves forward. False when the claim was lost (expired and taken).
        """
        params = {
            **_keys(org_id, object_type, moment_id, owner),
            "event_id": event_id[:200],
            "new_state": state,
            "v_bc_id": (bc_id or None) and bc_id[:100],
            "v_bc_number": (bc_number or None) and bc_number[:100],
            "published": published_state,
            "v_total_incl": total_including_tax,
            "v_currency": (currency_code or None) and currency_code[:10],
            "now": now,
        }
        stmt = self._sql.finish
        if applied is not None:
            stmt = self._sql.finish_applied
            params.update(
                key=applied.key,
                applied_id=applied.event_id[:200],
                applied_time=applied.time,
                v_sequence=applied.sequence,
            )
        return bool(await self._writes.run(stmt, params))

    async def release(
        self,
        org_id: str,
        object_type: str,
        moment_id: str,
        *,
        owner: str,
        event_id: str | None = None,
        state: str | None = None,
        code: str | None = None,
        message: str | None = None,
        now: datetime,
    ) -> None:
        """Give the claim back; with ``state``, record a failure of the newest change."""
        params = _keys(org_id, object_type, moment_id, owner)
        stmt = self._sql.release
        if state is not None and event_id is not None:
            stmt = self._sql.release_failed
            params.update(
                event_id=event_id[:200],
                new_state=state,
                code=(code or "")[:100] or None,
                message=clean(message),
                now=now,
            )
        await self._writes.run(stmt, params)

    async def extend(
        self,
        org_id: str,
        object_type: str,
        moment_id: str,
        *,
        owner: str,
        ttl_s: float,
        now: datetime,
    ) -> bool:
        """Extend our claim by ``ttl_s`` from ``now``; False when it is no longer ours (it
        expired and another change of the object claimed it meanwhile)."""
        params = _keys(org_id, object_type, moment_id, owner)
        params["expires"] = now + timedelta(seconds=ttl_s)
        return bool(await self._writes.run(self._sql.extend, params))

    async def record_failure(
        self,
        org_id: str,
        object_type: str,
        moment_id: str,
        *,
        event_id: str,
        state: str,
        code: str,
        message: str,
        attempts: int,
        now: datetime,
    ) -> tuple[LedgerEntry, str | None] | None:
        """A failure made durable (retry scheduled or dead-lettered) of the newest change.

        Returns the row and the state Moment last heard of when it changed (the event is the
        object's newest change), else None.
        """
        params = {
            "k_org": org_id[:100],
            "k_moment": moment_id[:200],
            "k_type": object_type[:30],
            "event_id": event_id[:200],
            "new_state": state,
            "v_attempts": attempts,
            "code": code[:100],
            "message": clean(message),
            "now": now,
        }
        row = await self._writes.run(self._sql.failure, params, returning=True)
        return None if row is None else (_entry(row), row.published_state)

    async def published_state(self, org_id: str, object_type: str, moment_id: str) -> str | None:
        t = self.table
        async with self._store.read() as conn:
            return (
                await conn.execute(
                    select(t.c.published_state).where(_pk(org_id, object_type, moment_id))
                )
            ).scalar()

    async def set_published(
        self, org_id: str, object_type: str, moment_id: str, *, event_id: str, state: str
    ) -> None:
        """Remember what Moment was told, if the event is still the newest change."""
        t = self.table
        async with self._store.write() as conn:
            await conn.execute(
                update(t)
                .where(_pk(org_id, object_type, moment_id), t.c.newest_event_id == event_id[:200])
                .values(published_state=state)
            )

    async def add_steps(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append history steps (the batched part of the hot path), one transaction."""
        if not rows:
            return
        async with self._store.write() as conn:
            await conn.execute(insert(self.steps), list(rows))

    # --- the integration log -----------------------------------------------------------------

    async def page(self, org_id: str, filters: LogFilters) -> tuple[list[LedgerEntry], str | None]:
        """One page of the organization's objects, newest change first, and the next cursor."""
        t = self.table
        query = select(*(t.c[name] for name in _ENTRY_COLUMNS)).where(t.c.org_id == org_id[:100])
        if filters.object_type:
            query = query.where(t.c.object_type == filters.object_type)
        if filters.state:
            query = query.where(t.c.state == filters.state)
        if filters.number:
            query = query.where(
                or_(t.c.moment_number == filters.number, t.c.moment_id == filters.number)
            )
        if filters.since:
            query = query.where(t.c.updated_at >= bindparam(None, filters.since, UtcDateTime()))
        if filters.cursor:
            c = filters.cursor
            query = query.where(
                tuple_(t.c.updated_at, t.c.object_type, t.c.moment_id)
                < tuple_(
                    bindparam(None, c.updated_at, UtcDateTime()),
                    bindparam(None, c.object_type, String()),
                    bindparam(None, c.moment_id, String()),
                )
            )
        query = query.order_by(
            t.c.updated_at.desc(), t.c.object_type.desc(), t.c.moment_id.desc()
        ).limit(filters.limit + 1)
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        entries = [_entry(r) for r in rows[: filters.limit]]
        next_cursor = None
        if len(rows) > filters.limit and entries:
            last = entries[-1]
            next_cursor = Cursor(last.updated_at, last.object_type, last.moment_id).encode()
        return entries, next_cursor

    # --- the reconciliation (worker/ops/reconcile.py) ---------------------------------------

    async def documents(self, org_id: str, from_date: str, to_date: str) -> list[dict[str, Any]]:
        """The organization's invoices and credit notes with a document date from ``from_date``
        to ``to_date`` (ISO dates, both included): the columns the reconciliation compares."""
        t = self.table
        query = (
            select(*(t.c[name] for name in _DOCUMENT_READ))
            .where(
                t.c.org_id == org_id[:100],
                t.c.object_type.in_(("invoice", "credit_note")),
                t.c.document_date >= from_date,
                t.c.document_date <= to_date,
            )
            .order_by(t.c.document_date, t.c.moment_number)
        )
        async with self._store.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def documents_by_number(
        self, org_id: str, numbers: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The organization's invoices and credit notes with these Moment numbers (any date)."""
        t = self.table
        found: list[dict[str, Any]] = []
        wanted = sorted(set(numbers))
        for start in range(0, len(wanted), 500):
            query = select(*(t.c[name] for name in _DOCUMENT_READ)).where(
                t.c.org_id == org_id[:100],
                t.c.object_type.in_(("invoice", "credit_note")),
                func.upper(t.c.moment_number).in_(wanted[start : start + 500]),
            )
            async with self._store.read() as conn:
                found.extend(dict(r._mapping) for r in (await conn.execute(query)).all())
        return found

    async def document_numbers(self, org_id: str, *, limit: int = 100_000) -> list[str]:
        """Moment numbers of the organization's invoices and credit notes (newest first), the
        sample the reconciliation learns the organization's number pattern from."""
        t = self.table
        query = (
            select(t.c.moment_number)
            .where(
                t.c.org_id == org_id[:100],
                t.c.object_type.in_(("invoice", "credit_note")),
                t.c.moment_number.is_not(None),
            )
            .order_by(t.c.updated_at.desc())
            .limit(limit)
        )
        async with self._store.read() as conn:
            numbers: list[Any] = list((await conn.execute(query)).scalars())
        return [str(n) for n in numbers]

    async def get(self, org_id: str, object_type: str, moment_id: str) -> LedgerEntry | None:
        t = self.table
        query = select(*(t.c[name] for name in _ENTRY_COLUMNS)).where(
            _pk(org_id, object_type, moment_id)
        )
        async with self._store.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _entry(row)

    async def history(
        self, org_id: str, object_type: str, moment_id: str, *, limit: int = HISTORY_LIMIT
    ) -> list[StepEntry]:
        """The object's last ``limit`` steps, oldest first."""
        s = self.steps
        query = (
            select(s.c.at, s.c.step, s.c.event_id, s.c.attempt, s.c.code, s.c.detail)
            .where(
                s.c.org_id == org_id[:100],
                s.c.object_type == object_type[:30],
                s.c.moment_id == moment_id[:200],
            )
            .order_by(s.c.id.desc())
            .limit(limit)
        )
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return [StepEntry(**r._asdict()) for r in reversed(rows)]

    # --- retention (small batches: never a long write lock) -----------------------------------

    async def prune_steps(self, *, before: datetime, batch: int) -> int:
        """Delete up to ``batch`` steps older than ``before``; returns how many."""
        s = self.steps
        async with self._store.read() as conn:
            ids: list[int] = list(
                (
                    await conn.execute(
                        select(s.c.id).where(s.c.at < before).order_by(s.c.id).limit(batch)
                    )
                ).scalars()
            )
        return await self._delete_steps(ids)

    async def crowded_objects(self, *, keep: int, batch: int) -> list[tuple[str, str, str]]:
        """Objects with more than ``keep`` steps (a read: no write lock while it scans)."""
        s = self.steps
        query = (
            select(s.c.org_id, s.c.object_type, s.c.moment_id)
            .group_by(s.c.org_id, s.c.object_type, s.c.moment_id)
            .having(func.count() > keep)
            .limit(batch)
        )
        async with self._store.read() as conn:
            return [(r.org_id, r.object_type, r.moment_id) for r in await conn.execute(query)]

    async def trim_object(self, org_id: str, object_type: str, moment_id: str, *, keep: int) -> int:
        """Delete all but the object's newest ``keep`` steps."""
        s = self.steps
        where = and_(
            s.c.org_id == org_id, s.c.object_type == object_type, s.c.moment_id == moment_id
        )
        async with self._store.read() as conn:
            ids: list[int] = list(
                (
                    await conn.execute(
                        select(s.c.id).where(where).order_by(s.c.id.desc()).offset(keep)
                    )
                ).scalars()
            )
        return await self._delete_steps(ids)

    async def _delete_steps(self, ids: list[int]) -> int:
        if not ids:
            return 0
        async with self._store.write() as conn:
            result = await conn.execute(delete(self.steps).where(self.steps.c.id.in_(ids)))
        return int(result.rowcount or 0)

    async def prune_objects(self, *, before: datetime, batch: int) -> int:
        """Delete up to ``batch`` objects unchanged since ``before`` (and their steps).

        Never an object in flight: pending or retrying rows, or rows under a claim, stay.
        """
        t, s = self.table, self.steps
        old = and_(
            t.c.updated_at < bindparam(None, before, UtcDateTime()),
            t.c.state.not_in(("pending", "retrying")),
            t.c.claim_owner.is_(None),
        )
        async with self._store.read() as conn:
            keys = [
                (r.org_id, r.object_type, r.moment_id)
                for r in await conn.execute(
                    select(t.c.org_id, t.c.object_type, t.c.moment_id).where(old).limit(batch)
                )
            ]
        if not keys:
            return 0
        deleted = 0
        async with self._store.write() as conn:
            for org_id, object_type, moment_id in keys:
                result = await conn.execute(
                    delete(t).where(_pk(org_id, object_type, moment_id), old)
                )
                if result.rowcount:
                    deleted += int(result.rowcount)
                    await conn.execute(
                        delete(s).where(
                            s.c.org_id == org_id,
                            s.c.object_type == object_type,
                            s.c.moment_id == moment_id,
                        )
                    )
        return deleted
