"""Leases: a named, expiring, exclusive claim in the shared store.

Used so that two workers never export the same invoice at once and only one poller runs per
organization. A crashed holder's lease simply expires. Works the same on SQLite (one process)
and PostgreSQL (several workers): acquiring is one atomic ``INSERT … ON CONFLICT DO UPDATE …
WHERE expired or ours``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, String, Table, and_, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.store.migrations import UtcDateTime, metadata

if TYPE_CHECKING:
    from worker.store.engine import Store

leases = Table(
    "leases",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


class Leases:
    """Acquire, renew and release leases (all methods are single statements)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def acquire(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take ``name`` for ``ttl_s`` seconds; True when we hold it (also when already ours)."""
        now = datetime.now(UTC)
        insert: Any = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
        stmt = insert(leases).values(
            name=name[:300], owner=owner, expires_at=now + timedelta(seconds=ttl_s)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
            where=or_(leases.c.expires_at < now, leases.c.owner == owner),
        )
        async with self.store.write() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def renew(self, name: str, owner: str, ttl_s: float) -> bool:
        """Extend a lease we hold; False when it was lost (expired and taken by another)."""
        async with self.store.write() as conn:
            result = await conn.execute(
                update(leases)
                .where(and_(leases.c.name == name[:300], leases.c.owner == owner))
                .values(expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s))
            )
        return bool(result.rowcount)

    async def release(self, name: str, owner: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                delete(leases).where(and_(leases.c.name == name[:300], leases.c.owner == owner))
            )
