"""Per-organization config cache for the message hot path.

A handler asks ``await cache.get(org)`` for every message. Within ``ttl`` seconds of the last
check the answer comes from memory (no database round trip, also for organizations without a
config). After that, one cheap query reads the row's ``(version, updated_at)``; only when it
changed is the row loaded and its secret decrypted again. So a save made by any process (the
admin API, another worker replica) is seen within ``ttl``; in the API's own process
``invalidate(org)`` makes it immediate.

Memory is bounded by the organizations that send events, not by the configured ones: at most
``max_entries`` are held (least recently used go first), and one not asked for in ``idle_s``
is dropped. A lock lives only while a refresh holds or waits for it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from worker.config.model import IntegrationConfig
from worker.runtime import KeyedLocks
from worker.store.configs import StoredConfig
from worker.store.engine import Store

log = structlog.get_logger(__name__)

DEFAULT_TTL_S = 5.0
# Enough for thousands of organizations sending at once; an entry is a few KiB.
DEFAULT_MAX_ENTRIES = 4096
# An organization silent this long leaves the cache (coming back costs two small queries).
DEFAULT_IDLE_S = 600.0

Stamp = tuple[int, datetime]


@dataclass
class _Entry:
    stored: StoredConfig | None
    checked_at: float
    used_at: float


class ConfigCache:
    """Configs by organization, re-validated against the database at most once per ``ttl``."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        idle_s: float = DEFAULT_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.ttl = ttl
        self._max_entries = max_entries
        self._idle_s = idle_s
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._locks: KeyedLocks[str] = KeyedLocks()
        # Organizations being refreshed, and those of them invalidated meanwhile (their answer
        # may predate the change: not trusted for ttl). Both as small as the refreshes running.
        self._refreshing: set[str] = set()
        self._invalidated: set[str] = set()
        self._swept_at = clock()

    def __len__(self) -> int:
        """Organizations held now."""
        return len(self._entries)

    async def get(self, org_id: str) -> StoredConfig | None:
        """The organization's saved config (with secret), or ``None`` when it has none."""
        now = self._clock()
        entry = self._entries.get(org_id)
        if entry is not None:
            entry.used_at = now
            self._entries.move_to_end(org_id)
            if now - entry.checked_at < self.ttl:
                return entry.stored
        # One refresh per organization at a time: a burst of messages makes one query.
        async with self._locks.for_key(org_id):
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
            self._invalidated |= self._refreshing
            return
        self._entries.pop(org_id, None)
        if org_id in self._refreshing:
            self._invalidated.add(org_id)

    async def _refresh(self, org_id: str, entry: _Entry | None) -> StoredConfig | None:
        started = self._clock()
        self._refreshing.add(org_id)
        try:
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
            if org_id in self._invalidated:
                # Invalidated while we read: the answer may predate the change; recheck next time.
                self._entries.pop(org_id, None)
                return stored
            self._store_entry(org_id, _Entry(stored, started, started))
            return stored
        finally:
            self._refreshing.discard(org_id)
            self._invalidated.discard(org_id)

    def _store_entry(self, org_id: str, entry: _Entry) -> None:
        self._entries.pop(org_id, None)
        self._entries[org_id] = entry
        now = entry.checked_at
        if now - self._swept_at >= min(60.0, self._idle_s):
            # At most once a minute: the organizations silent for idle_s leave.
            self._swept_at = now
            for org in [o for o, e in self._entries.items() if now - e.used_at > self._idle_s]:
                del self._entries[org]
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
