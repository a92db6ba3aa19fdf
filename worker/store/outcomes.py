"""The ``sync_outcomes`` table: the last success and failure per organization and object type
(what the status endpoint shows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, ColumnElement, Insert, String, Table, Text, case, select

from worker.log import redact_text
from worker.store.base import ORG_ID_MAX, check_org_id
from worker.store.migrations import UtcDateTime, metadata
from worker.store.time import iso, utcnow

if TYPE_CHECKING:
    from worker.store.engine import Store

OBJECT_TYPE_MAX = 50
FAILURE_MESSAGE_MAX = 2000

sync_outcomes = Table(
    "sync_outcomes",
    metadata,
    Column("org_id", String(ORG_ID_MAX), primary_key=True),
    Column("object_type", String(OBJECT_TYPE_MAX), primary_key=True),
    Column("last_success_at", UtcDateTime),
    Column("last_success_ref", String(200)),
    Column("last_failure_at", UtcDateTime),
    Column("last_failure_code", String(100)),
    Column("last_failure_message", Text),
    # The last object of this type acked as waiting for a person in BC (e.g. an invoice waiting
    # for approval): its Moment number, the waiting code and what to do (migration step 5).
    Column("last_waiting_at", UtcDateTime),
    Column("last_waiting_ref", String(200)),
    Column("last_waiting_code", String(100)),
    Column("last_waiting_message", Text),
)


@dataclass(frozen=True)
class SyncOutcome:
    """The last success, failure and waiting object of one object type of one organization."""

    org_id: str
    object_type: str
    last_success_at: datetime | None
    last_success_ref: str | None
    last_failure_at: datetime | None
    last_failure_code: str | None
    last_failure_message: str | None
    last_waiting_at: datetime | None = None
    last_waiting_ref: str | None = None
    last_waiting_code: str | None = None
    last_waiting_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the status endpoint."""
        return {
            "object_type": self.object_type,
            "last_success_at": iso(self.last_success_at),
            "last_success_ref": self.last_success_ref,
            "last_failure_at": iso(self.last_failure_at),
            "last_failure_code": self.last_failure_code,
            "last_failure_message": self.last_failure_message,
            "last_waiting_at": iso(self.last_waiting_at),
            "last_waiting_ref": self.last_waiting_ref,
            "last_waiting_code": self.last_waiting_code,
            "last_waiting_message": self.last_waiting_message,
        }


def _latest(current: Any, new: Any, when_new: Any) -> ColumnElement[Any]:
    """``new`` unless the stored event is newer: out-of-order reports never go back in time."""
    return case((when_new, new), else_=current)


class SyncOutcomeRepository:
    """The ``sync_outcomes`` table: last success and failure per organization and object type."""

    table = sync_outcomes

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record_success(
        self, org_id: str, object_type: str, ref: str | None = None, *, at: datetime | None = None
    ) -> None:
        """Remember a success (``ref``: e.g. the BC number or id of what was written)."""
        async with self._store.write() as conn:
            await conn.execute(self._success(org_id, object_type, ref, at or utcnow()))

    async def record_successes(
        self, items: Sequence[tuple[str, str, str | None, datetime]]
    ) -> None:
        """Several ``(org_id, object_type, ref, at)`` successes in one transaction."""
        if not items:
            return
        async with self._store.write() as conn:
            for org_id, object_type, ref, at in items:
                await conn.execute(self._success(org_id, object_type, ref, at))

    def _success(self, org_id: str, object_type: str, ref: str | None, at: datetime) -> Insert:
        t = self.table
        values = {
            "org_id": check_org_id(org_id),
            "object_type": _object_type(object_type),
            "last_success_at": at,
            "last_success_ref": (ref or None) and ref[:200],
        }

        def set_(new: Any) -> Mapping[str, Any]:
            is_newer = (t.c.last_success_at.is_(None)) | (
                new.last_success_at >= t.c.last_success_at
            )
            return {
                "last_success_at": _latest(t.c.last_success_at, new.last_success_at, is_newer),
                "last_success_ref": _latest(t.c.last_success_ref, new.last_success_ref, is_newer),
            }

        return self._store.upsert(t, values, ["org_id", "object_type"], set_)

    async def record_failure(
        self,
        org_id: str,
        object_type: str,
        code: str,
        message: str,
        *,
        at: datetime | None = None,
    ) -> None:
        """Remember a failure with its error code and a message for the Moment admin."""
        await self._record_latest(
            org_id,
            object_type,
            "last_failure_at",
            {
                "last_failure_at": at or utcnow(),
                "last_failure_code": code[:100],
                # Messages may quote BC's or Entra's answers: mask anything secret-looking.
                "last_failure_message": redact_text(message)[:FAILURE_MESSAGE_MAX],
            },
        )

    async def record_waiting(
        self,
        org_id: str,
        object_type: str,
        ref: str | None,
        code: str,
        message: str,
        *,
        at: datetime | None = None,
    ) -> None:
        """Remember the last object acked as waiting for a person in BC (``ref``: its Moment
        number), with the waiting code and the plain-words message. Kept like the last failure:
        a later success of the same object does not clear it (compare the timestamps)."""
        await self._record_latest(
            org_id,
            object_type,
            "last_waiting_at",
            {
                "last_waiting_at": at or utcnow(),
                "last_waiting_ref": (ref or None) and ref[:200],
                "last_waiting_code": code[:100],
                "last_waiting_message": redact_text(message)[:FAILURE_MESSAGE_MAX],
            },
        )

    async def _record_latest(
        self, org_id: str, object_type: str, stamp: str, columns: Mapping[str, Any]
    ) -> None:
        """Upsert ``columns`` unless the stored ``stamp`` column is newer (late reports lose)."""
        t = self.table
        values = {"org_id": check_org_id(org_id), "object_type": _object_type(object_type)}
        values.update(columns)

        def set_(new: Any) -> Mapping[str, Any]:
            is_newer = (t.c[stamp].is_(None)) | (new[stamp] >= t.c[stamp])
            return {name: _latest(t.c[name], new[name], is_newer) for name in columns}

        async with self._store.write() as conn:
            await conn.execute(self._store.upsert(t, values, ["org_id", "object_type"], set_))

    async def for_org(self, org_id: str) -> list[SyncOutcome]:
        """The organization's outcomes, one per object type, sorted by object type."""
        t = self.table
        query = select(t).where(t.c.org_id == check_org_id(org_id)).order_by(t.c.object_type)
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return [SyncOutcome(**row._asdict()) for row in rows]


def _object_type(value: str) -> str:
    if not value or len(value) > OBJECT_TYPE_MAX:
        raise ValueError(f"object type must be 1 to {OBJECT_TYPE_MAX} characters")
    return value
