"""Console sessions and the sign-in rate limit, kept in the store so every api replica shares
them and a restart keeps them.

A session id is 32 random bytes; the browser holds it in an HttpOnly, SameSite=Strict cookie,
the store only its SHA-256 (a copy of the table signs nobody in). Each row also keeps the
token's name, whether it may only read, a CSRF secret, and a check value bound to the token
that signed in: ``sha256(session id + token)``. Every request recomputes that check against
the tokens configured *now*, so removing or rotating a token in ``BC_SYNC_API_TOKEN`` ends its
sessions at once, and a token turned read-only is read-only in its open sessions too. The check
needs the session id, which the store never sees, so the table cannot be used to guess tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, Column, Integer, String, Table, case, delete, select, update

from worker.api.app import ApiToken
from worker.store import UtcDateTime, metadata, utcnow

if TYPE_CHECKING:
    from worker.store import Store

# A session ends after this long without a request, and in any case this long after sign-in.
IDLE = timedelta(hours=2)
ABSOLUTE = timedelta(hours=12)
# last_seen_at is written at most this often (a page's polling must not write on every poll).
TOUCH_EVERY = timedelta(minutes=1)
# Failed sign-ins allowed per window: per client address, and for all addresses together (a
# slow, distributed guess still meets the global limit).
WINDOW = timedelta(minutes=10)
PER_ADDRESS = 10
GLOBAL = 100

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_name", String(200), nullable=False),
    Column("token_check", String(64), nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("csrf_secret", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

console_sign_in_attempts = Table(
    "console_sign_in_attempts",
    metadata,
    Column("bucket", String(200), primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("failures", Integer, nullable=False),
)


def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Session:
    id_hash: str
    token_name: str
    read_only: bool
    csrf_secret: str
    created_at: datetime
    expires_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            (presented or "").encode(), self.csrf_secret.encode()
        )


class Sessions:
    """Create, look up and end console sessions."""

    table = console_sessions

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, token: str, entry: ApiToken) -> tuple[str, Session]:
        """A new session for a token that just signed in; returns (cookie value, session)."""
        raw = secrets.token_urlsafe(32)
        now = utcnow()
        session = Session(
            id_hash=_sha256(raw),
            token_name=entry.name,
            read_only=entry.read_only,
            csrf_secret=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + IDLE,
        )
        async with self._store.write() as conn:
            await conn.execute(
                self.table.insert().values(
                    id_hash=session.id_hash,
                    token_name=entry.name[:200],
                    token_check=_sha256(raw, token),
                    read_only=entry.read_only,
                    csrf_secret=session.csrf_secret,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=session.expires_at,
                )
            )
        return raw, session

    async def lookup(self, raw: str | None, tokens: dict[str, ApiToken]) -> Session | None:
        """The live session of a cookie value, or None (unknown, expired, or its token is no
        longer configured). Slides the idle expiry, at most once per :data:`TOUCH_EVERY`."""
        if not raw or len(raw) > 100:
            return None
        t = self.table
        id_hash = _sha256(raw)
        async with self._store.read() as conn:
            row = (await conn.execute(select(t).where(t.c.id_hash == id_hash))).first()
        now = utcnow()
        if row is None or row.expires_at <= now or row.created_at + ABSOLUTE <= now:
            return None
        entry = None
        for token, candidate in tokens.items():
            if hmac.compare_digest(_sha256(raw, token), row.token_check):
                entry = candidate
        if entry is None or entry.name != row.token_name:
            return None
        expires = min(now + IDLE, row.created_at + ABSOLUTE)
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with self._store.write() as conn:
                await conn.execute(
                    update(t)
                    .where(t.c.id_hash == id_hash)
                    .values(last_seen_at=now, expires_at=expires)
                )
        else:
            expires = row.expires_at
        return Session(
            id_hash=id_hash,
            token_name=row.token_name,
            # The stricter of the two: a token turned read-only is read-only at once.
            read_only=bool(row.read_only) or entry.read_only,
            csrf_secret=row.csrf_secret,
            created_at=row.created_at,
            expires_at=expires,
        )

    async def end(self, raw: str | None) -> None:
        if not raw:
            return
        async with self._store.write() as conn:
            await conn.execute(delete(self.table).where(self.table.c.id_hash == _sha256(raw)))

    async def prune(self) -> int:
        """Delete expired sessions."""
        t = self.table
        now = utcnow()
        async with self._store.write() as conn:
            result = await conn.execute(
                delete(t).where((t.c.expires_at <= now) | (t.c.created_at <= now - ABSOLUTE))
            )
        return result.rowcount or 0


def client_address(peer: str | None, forwarded_for: str | None) -> str:
    """The address sign-in attempts are counted under.

    ``X-Forwarded-For`` is trusted only when the TCP peer is a loopback or private address
    (a reverse proxy or ingress in front of the console), and then only its last entry (the
    one that proxy appended; entries further left are whatever the client sent). From any
    other peer the header is ignored: anyone could send it to get a fresh count."""
    address = peer or "unknown"
    if forwarded_for:
        try:
            trusted = (
                ipaddress.ip_address(address).is_private
                or ipaddress.ip_address(address).is_loopback
            )
        except ValueError:
            trusted = False
        last = forwarded_for.split(",")[-1].strip()
        if trusted and last:
            with suppress(ValueError):
                address = str(ipaddress.ip_address(last))
    return address[:100]


class SignInLimiter:
    """Failed sign-ins per client address and for everyone, in fixed windows in the store."""

    table = console_sign_in_attempts

    def __init__(
        self,
        store: Store,
        *,
        per_address: int = PER_ADDRESS,
        overall: int = GLOBAL,
        window: timedelta = WINDOW,
    ) -> None:
        self._store = store
        self.per_address = per_address
        self.overall = overall
        self.window = window

    async def retry_after(self, address: str) -> float | None:
        """Seconds until this address may try again, or None when it may try now."""
        t = self.table
        now = utcnow()
        buckets = {f"addr:{address}": self.per_address, "all": self.overall}
        async with self._store.read() as conn:
            rows = (await conn.execute(select(t).where(t.c.bucket.in_(list(buckets))))).all()
        wait: float | None = None
        for row in rows:
            end = row.window_start + self.window
            if end > now and row.failures >= buckets[row.bucket]:
                left = (end - now).total_seconds()
                wait = max(wait or 0.0, left)
        return wait

    async def failed(self, address: str) -> None:
        """Count one failed sign-in for the address and for everyone."""
        t = self.table
        now = utcnow()
        start = now - self.window
        for bucket in (f"addr:{address}", "all"):
            values = {"bucket": bucket[:200], "window_start": now, "failures": 1}
            stmt = self._store.upsert(
                t,
                values,
                ["bucket"],
                lambda new: {
                    # A window that ended starts again with this failure.
                    "window_start": case(
                        (t.c.window_start <= start, new.window_start), else_=t.c.window_start
                    ),
                    "failures": case((t.c.window_start <= start, 1), else_=t.c.failures + 1),
                },
            )
            async with self._store.write() as conn:
                await conn.execute(stmt)
