"""Per-organization health signals the consumers see and the console shows: BC throttling,
the circuit breaker refusing requests, credentials rejected.

The breaker and the limiter live in each consumer process (``worker.bc.limits``); the console
runs in the api process, maybe on another replica. So each consumer's observer writes when it
last saw each signal for an organization (at most once per :data:`WRITE_EVERY_S` per signal, so
a storm of 429s costs a few writes, not one per message), and the console reads the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Column, String, Table, select

from worker.events.handlers import FailureReport, Observer
from worker.store import UtcDateTime, metadata, utcnow

if TYPE_CHECKING:
    from worker.store import Store

WRITE_EVERY_S = 10.0
# How long a signal counts as current: the breaker opens for at most a minute at a time, a
# 429 pause is short; a few minutes without one means it is over.
THROTTLED_FOR = timedelta(minutes=10)
BREAKER_FOR = timedelta(minutes=3)

org_signals = Table(
    "org_signals",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("throttled_at", UtcDateTime),
    Column("breaker_open_at", UtcDateTime),
    Column("credentials_rejected_at", UtcDateTime),
)

# Failure report → the signal column it sets.
THROTTLED = "throttled_at"
BREAKER = "breaker_open_at"
CREDENTIALS = "credentials_rejected_at"


def signal_of(report: FailureReport) -> str | None:
    if report.code == "BC-CREDENTIALS-REJECTED":
        return CREDENTIALS
    if report.code == "BC-THROTTLED":
        return THROTTLED
    if report.bc_code == "CircuitOpen":
        return BREAKER
    return None


@dataclass(frozen=True)
class OrgSignals:
    org_id: str
    throttled_at: datetime | None
    breaker_open_at: datetime | None
    credentials_rejected_at: datetime | None

    def throttled(self, now: datetime) -> bool:
        return self.throttled_at is not None and now - self.throttled_at < THROTTLED_FOR

    def breaker_open(self, now: datetime) -> bool:
        return self.breaker_open_at is not None and now - self.breaker_open_at < BREAKER_FOR

    def credentials_rejected(self, last_success: datetime | None) -> bool:
        """Rejected credentials stay a signal until something succeeded after them."""
        if self.credentials_rejected_at is None:
            return False
        return last_success is None or last_success < self.credentials_rejected_at


class SignalRepository:
    table = org_signals

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, org_id: str, signal: str, at: datetime | None = None) -> None:
        values = {"org_id": org_id[:100], signal: at or utcnow()}
        async with self._store.write() as conn:
            await conn.execute(self._store.upsert(self.table, values, ["org_id"], [signal]))

    async def all(self) -> dict[str, OrgSignals]:
        async with self._store.read() as conn:
            rows = (await conn.execute(select(self.table))).all()
        return {row.org_id: OrgSignals(**row._asdict()) for row in rows}

    async def get(self, org_id: str) -> OrgSignals | None:
        t = self.table
        async with self._store.read() as conn:
            row = (await conn.execute(select(t).where(t.c.org_id == org_id))).first()
        return None if row is None else OrgSignals(**row._asdict())


class SignalObserver(Observer):
    """Writes the signals of the consumer's failure reports (retries included)."""

    def __init__(
        self,
        signals: SignalRepository,
        *,
        every_s: float = WRITE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.signals = signals
        self._every_s = every_s
        self._clock = clock
        self._written: dict[tuple[str, str], float] = {}

    async def on_failure(self, report: FailureReport) -> None:
        signal = signal_of(report)
        if signal is None or not report.org:
            return
        key = (report.org, signal)
        now = self._clock()
        last = self._written.get(key)
        if last is not None and now - last < self._every_s:
            return
        self._written[key] = now
        if len(self._written) > 10_000:  # bounded: forget the oldest half
            for old in sorted(self._written, key=self._written.__getitem__)[:5_000]:
                del self._written[old]
        await self.signals.record(report.org, signal)
