"""Per-organization state held in memory stays bounded by the active organizations (issue #22):
thousands of distinct organizations through each structure leave it at its cap, and the entry
an active organization still needs survives."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.support import factories as f
from tests.support.settings import make_settings
from worker.app import bc_hub
from worker.bc import BcCredentials
from worker.bc.auth import APP_IDLE_S, TokenProvider
from worker.bc.limits import BREAKER_FAILURES, LimitConfig, Limiters
from worker.config.crypto import SecretBox
from worker.config.model import parse_config
from worker.store import ConfigCache, Leases, Store
from worker.sync.context import FACTS_MAX, CompanyFacts, SyncContext

DISTINCT = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- limiters and circuit breakers -------------------------------------------------------


async def test_ten_thousand_subjects_leave_the_limiters_at_their_cap() -> None:
    clock = Clock()
    limiters = Limiters(max_subjects=100, clock=clock)
    active = limiters.get(("tenant", "active"))
    for i in range(DISTINCT):
        lim = limiters.get(("tenant", str(i)))
        await lim.acquire(max_wait=0)
        await lim.release()
        if i % 50 == 0:  # the active organization keeps sending
            assert limiters.get(("tenant", "active")) is active
        clock.now += 0.01
        assert len(limiters) <= 100
    assert limiters.peek(("tenant", "active")) is active


async def test_limiters_that_keep_bc_safe_are_never_forgotten() -> None:
    """In flight, paused after a 429, an open breaker, a breaker counting failures, or most
    of the budget used: forgetting any of them would let BC be hit harder than it allows."""
    clock = Clock()
    limiters = Limiters(LimitConfig(budget=100), max_subjects=20, clock=clock)
    in_flight = limiters.get("in-flight")
    await in_flight.acquire(max_wait=0)
    paused = limiters.get("paused")
    await paused.acquire(max_wait=0)
    await paused.release(throttled=True, retry_after=600)
    broken = limiters.get("open-breaker")
    for _ in range(BREAKER_FAILURES):
        await broken.acquire(max_wait=0)
        await broken.release(failed=True)
    assert broken.open_for() > 0
    failing = limiters.get("counting-failures")
    await failing.acquire(max_wait=0)
    await failing.release(failed=True)
    busy = limiters.get("busy")
    for _ in range(50):  # half of its budget in this window
        await busy.acquire(max_wait=0)
        await busy.release()
    kept = {"in-flight": in_flight, "paused": paused, "counting-failures": failing, "busy": busy}
    for i in range(DISTINCT):
        limiters.get(f"other-{i}")
        assert len(limiters) <= 20
    for name, limiter in kept.items():
        assert limiters.peek(name) is limiter, name
    assert limiters.peek("open-breaker") is broken
    assert broken.open_for() > 0  # still refusing: BC is not probed early


async def test_a_limiter_unused_for_a_whole_window_is_forgotten_first() -> None:
    clock = Clock()
    limiters = Limiters(LimitConfig(window_s=300), max_subjects=10, clock=clock)
    old = limiters.get("old")
    await old.acquire(max_wait=0)
    await old.release(failed=True)  # counting failures, but long ago
    clock.now += 301
    for i in range(10):
        limiters.get(f"new-{i}")
    assert limiters.peek("old") is None


# --- msal applications ---------------------------------------------------------------------


def _tenant(i: int) -> str:
    return f"{i:08d}-0000-4000-8000-000000000000"


async def test_ten_thousand_tenants_leave_the_msal_apps_at_their_cap() -> None:
    clock = Clock()
    tokens = TokenProvider("https://login.example", max_apps=64, clock=clock)
    secret = SecretStr("s3cret")
    active = tokens._entry(tokens._key(_tenant(0), "client", secret))
    fetching = tokens._entry(tokens._key(_tenant(1), "client", secret))
    await fetching.lock.acquire()  # a token request of that tenant is under way
    for i in range(2, DISTINCT):
        tokens._entry(tokens._key(_tenant(i), "client", secret))
        if i % 20 == 0:
            assert tokens._entry(tokens._key(_tenant(0), "client", secret)) is active
        assert len(tokens) <= 64
    assert tokens._entry(tokens._key(_tenant(0), "client", secret)) is active
    # The one whose fetch is in flight is still the one its waiters share.
    assert tokens._entry(tokens._key(_tenant(1), "client", secret)) is fetching
    fetching.lock.release()


async def test_msal_apps_idle_for_an_hour_are_dropped() -> None:
    clock = Clock()
    tokens = TokenProvider("https://login.example", max_apps=1000, clock=clock)
    secret = SecretStr("s3cret")
    for i in range(100):
        tokens._entry(tokens._key(_tenant(i), "client", secret))
    clock.now += APP_IDLE_S + 1
    tokens._entry(tokens._key(_tenant(1000), "client", secret))
    assert len(tokens) == 1


# --- config cache --------------------------------------------------------------------------


async def _store(tmp_path: Path) -> Store:
    store = Store.from_url(
        f"sqlite+aiosqlite:///{tmp_path / 'bounded.db'}",
        secrets=SecretBox([Fernet.generate_key().decode()]),
    )
    await store.migrate()
    return store


async def test_many_organizations_leave_the_config_cache_at_its_cap(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    try:
        await store.configs.put("org-active", parse_config(f.exports_only()))
        clock = Clock()
        cache = ConfigCache(store, ttl=5.0, max_entries=50, clock=clock)
        active = await cache.get("org-active")
        assert active is not None
        # Each new organization is a query: 1,000 of them (50 x the cap) keep the test short.
        for i in range(1000):
            assert await cache.get(f"org-unknown-{i}") is None  # cached as "no config"
            if i % 20 == 0:
                assert await cache.get("org-active") is active  # still from memory
            assert len(cache) <= 50
        assert len(cache._locks) == 0  # a lock lives only while a refresh holds it
        assert await cache.get("org-active") is active
    finally:
        await store.close()


async def test_an_organization_silent_for_the_idle_time_leaves_the_config_cache(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    try:
        clock = Clock()
        cache = ConfigCache(store, ttl=5.0, idle_s=600.0, clock=clock)
        for i in range(50):
            await cache.get(f"org-{i}")
        clock.now += 300
        await cache.get("org-0")  # still active
        clock.now += 301
        await cache.get("org-new")
        assert len(cache) == 2
    finally:
        await store.close()


async def test_invalidating_during_a_refresh_is_still_not_trusted(tmp_path: Path) -> None:
    """The bookkeeping of invalidations lives only while a refresh runs, and still works."""
    store = await _store(tmp_path)
    try:
        await store.configs.put("org-1", parse_config(f.exports_only(environment="Production")))
        cache = ConfigCache(store, ttl=60.0)
        refresh = asyncio.create_task(cache.get("org-1"))
        await asyncio.sleep(0)  # the refresh has started its query
        await store.configs.put("org-1", parse_config(f.exports_only(environment="Sandbox")))
        cache.invalidate("org-1")
        await refresh
        assert (await cache.config("org-1")).environment == "Sandbox"  # type: ignore[union-attr]
        assert not cache._refreshing and not cache._invalidated
    finally:
        await store.close()


# --- company facts -------------------------------------------------------------------------


async def test_company_facts_stay_at_their_cap(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = await _store(tmp_path)
    hub = bc_hub(settings)
    try:
        ctx = SyncContext(settings, ConfigCache(store), hub, claims=Leases(store))
        facts = CompanyFacts("SE", "SEK", (), {"PROJEKT": "d1"})
        active = BcCredentials.from_config(
            tenant_id=_tenant(0),
            client_id="client",
            client_secret="s",
            environment="Production",
            company_name="Active AB",
        )
        ctx._keep_facts(("t", "Production", "first"), facts)
        active_key = (active.tenant_id.lower(), active.environment, active.company_name)
        ctx._keep_facts(active_key, facts)
        for i in range(DISTINCT):
            ctx._keep_facts((_tenant(i + 1), "Production", f"Company {i}"), facts)
            if i % 100 == 0:
                # Served from memory (the hub points nowhere: a BC call would fail).
                assert await ctx.facts(hub.connection(active)) is facts
            assert len(ctx._facts) <= FACTS_MAX
        assert await ctx.facts(hub.connection(active)) is facts
        assert ("t", "Production", "first") not in ctx._facts
        assert len(ctx._facts_locks) == 0
    finally:
        await hub.close()
        await store.close()
