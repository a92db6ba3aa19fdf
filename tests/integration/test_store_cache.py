"""The config cache of the message hot path, on real SQLite and PostgreSQL databases.

A fake clock stands in for time, so "after the TTL" needs no sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.support.clock import Clock
from tests.support.db import MakeStore
from tests.support.factories import config, secret_of
from worker.store import ConfigCache, Store

TTL = 5.0


@contextmanager
def count_queries(store: Store) -> Iterator[list[str]]:
    """The SELECTs a store sends to its database while the block runs."""
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", on_execute)


async def two_stores(make_store: MakeStore) -> tuple[Store, Store]:
    """One store for the worker's cache, one for "another process" (the admin API)."""
    worker, api = make_store(), make_store()
    await worker.migrate()
    return worker, api


async def test_within_the_ttl_messages_do_not_touch_the_database(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    await api.configs.put("org-1", config())
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    first = await cache.get("org-1")
    assert first is not None
    assert secret_of(first) == "Qx8~k3.PLAINTEXT-client-secret-4711"
    with count_queries(worker) as queries:
        for _ in range(100):
            clock.advance(0.04)
            assert await cache.get("org-1") is first
    assert queries == []


async def test_a_change_by_another_process_is_seen_after_the_ttl(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    await api.configs.put("org-1", config(environment="Production"))
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    assert (await cache.config("org-1")).environment == "Production"  # type: ignore[union-attr]

    await api.configs.put("org-1", config(environment="Sandbox", client_secret=None))
    clock.advance(TTL / 2)
    assert (await cache.config("org-1")).environment == "Production"  # type: ignore[union-attr]
    clock.advance(TTL)
    stored = await cache.get("org-1")
    assert stored is not None
    assert stored.config.environment == "Sandbox"
    assert stored.version == 2


async def test_an_unchanged_config_is_rechecked_with_one_small_query(
    make_store: MakeStore,
) -> None:
    worker, api = await two_stores(make_store)
    await api.configs.put("org-1", config())
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    first = await cache.get("org-1")
    clock.advance(TTL + 1)
    with count_queries(worker) as queries:
        assert await cache.get("org-1") is first
    assert len(queries) == 1
    assert "secret_ciphertext" not in queries[0]


async def test_a_deleted_config_disappears_after_the_ttl(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    await api.configs.put("org-1", config())
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    assert await cache.get("org-1") is not None
    await api.configs.delete("org-1")
    clock.advance(TTL + 1)
    assert await cache.get("org-1") is None


async def test_a_config_deleted_and_created_again_is_reloaded(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    await api.configs.put("org-1", config(environment="Production"))
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    assert await cache.get("org-1") is not None
    await api.configs.delete("org-1")
    assert await api.configs.put("org-1", config(environment="Sandbox")) == "Created"
    clock.advance(TTL + 1)
    stored = await cache.get("org-1")
    assert stored is not None
    # Same version number (1) as before, still seen as a change.
    assert (stored.version, stored.config.environment) == (1, "Sandbox")


async def test_invalidate_makes_a_local_save_visible_at_once(make_store: MakeStore) -> None:
    worker, _ = await two_stores(make_store)
    await worker.configs.put("org-1", config(environment="Production"))
    cache = ConfigCache(worker, ttl=TTL, clock=Clock())
    assert await cache.get("org-1") is not None
    await worker.configs.put("org-1", config(environment="Sandbox"))
    cache.invalidate("org-1")
    assert (await cache.config("org-1")).environment == "Sandbox"  # type: ignore[union-attr]
    await worker.configs.delete("org-1")
    cache.invalidate()
    assert await cache.get("org-1") is None


async def test_an_unconfigured_organization_is_cached_too(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    with count_queries(worker) as queries:
        results = await asyncio.gather(*(cache.get("org-new") for _ in range(50)))
    assert results == [None] * 50
    # A burst of messages for one organization makes one query, not fifty.
    assert len(queries) == 1
    await api.configs.put("org-new", config())
    clock.advance(TTL + 1)
    assert await cache.get("org-new") is not None


async def test_a_database_outage_serves_the_last_known_config(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    await api.configs.put("org-1", config())
    clock = Clock()
    cache = ConfigCache(worker, ttl=TTL, clock=clock)
    first = await cache.get("org-1")
    async with worker.write() as conn:
        # Make the next check fail the way an unreachable database does (an SQL error).
        await conn.exec_driver_sql("ALTER TABLE integration_configs RENAME TO gone")
    clock.advance(TTL + 1)
    assert await cache.get("org-1") is first
    async with worker.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE gone RENAME TO integration_configs")


async def test_the_cache_holds_a_bounded_number_of_organizations(make_store: MakeStore) -> None:
    worker, api = await two_stores(make_store)
    for org in ("a", "b", "c"):
        await api.configs.put(org, config())
    cache = ConfigCache(worker, ttl=TTL, max_entries=2, clock=Clock())
    for org in ("a", "b", "c"):
        assert await cache.get(org) is not None
    with count_queries(worker) as queries:
        await cache.get("c")
        await cache.get("a")  # evicted: loaded again
    assert len(queries) >= 1
