"""Per-organization config cache for the message hot path.

A handler asks ``await cache.get(org)`` for every message. Within ``ttl`` seconds of the last
check the answer comes from memory (no database round trip, also for organizations without a
config). After that, one cheap query reads the row's ``(version, updated_at)``; only when it
changed is the row loaded and its secret decrypted again. So a save made by any process (the
admin API, another worker replica) is seen within ``ttl``; in the API's own process
``invalidate(org)`` makes it immediate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from worker.config.model import IntegrationConfig
from worker.store.configs import StoredConfig
from worker.store.engine import Store

log = structlog.get_logger(__name__)

DEFAULT_TTL_S = 5.0

Stamp = tuple[int, datetime]


@dataclass
class _Entry:
    stored: StoredConfig | None
    checked_at: float


class ConfigCache:
    """Configs by organization, re-validated against the database at most once per ``ttl``."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = DEFAULT_TTL_S,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Bumped by invalidate(): a refresh that started before it must not be trusted for ttl.
        self._generation: dict[str, int] = {}
        self._all_generation = 0

    async def get(self, org_id: str) -> StoredConfig | None:
        """The organization's saved config (with secret), or ``None`` when it has none."""
        entry = self._entries.get(org_id)
        if entry is not None and self._clock() - entry.checked_at < self.ttl:
            return entry.stored
        lock = self._locks.setdefault(org_id, asyncio.Lock())
        # One refresh per organization at a time: a burst of messages makes one query.
        async with lock:
            entry = self._entries.get(org_id)
            if entry is not None and self._clock() - entry.checked_at < self.ttl:
                return entry.stored
            return await self._refresh(org_id, entry)

    async def config(self, org_id: str) -> IntegrationConfig | None:
        """Just the configuration (with secret), or ``None``."""
        stored = await self.get(org_id)
        return stored.config if stored is not None else None

    def invalidate(self, org_id: str | None = None) -> None:
        """Forget one organization (after saving or deleting it here), or everything."""
        if org_id is None:
            self._entries.clear()
            self._all_generation += 1
            return
        self._entries.pop(org_id, None)
        self._generation[org_id] = self._generation.get(org_id, 0) + 1

    async def _refresh(self, org_id: str, entry: _Entry | None) -> StoredConfig | None:
        generation = self._generation_of(org_id)
        started = self._clock()
        try:
            stored = entry.stored if entry is not None else None
            stamp = await self._store.configs.stamp(org_id)
            if stamp is None:
                stored = None
            elif stored is None or stored.stamp != stamp:
                stored = await self._store.configs.get(org_id)
        except (OperationalError, DBAPIError, OSError, TimeoutError) as exc:
            if entry is None:
                raise
            # Keep serving the last known config through a database hiccup; retry after ttl.
            log.warning("config_cache.stale", org=org_id, error=type(exc).__name__)
            entry.checked_at = started
            return entry.stored
        if self._generation_of(org_id) != generation:
            # Invalidated while we read: the answer may predate the change; recheck next time.
            self._entries.pop(org_id, None)
            return stored
        self._store_entry(org_id, _Entry(stored, started))
        return stored

    def _generation_of(self, org_id: str) -> tuple[int, int]:
        return (self._all_generation, self._generation.get(org_id, 0))

    def _store_entry(self, org_id: str, entry: _Entry) -> None:
        self._entries.pop(org_id, None)
        self._entries[org_id] = entry
        while len(self._entries) > self._max_entries:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            lock = self._locks.get(oldest)
            if lock is not None and not lock.locked():
                del self._locks[oldest]
