"""Leases on SQLite and PostgreSQL: exclusive, re-entrant for the holder, expiring."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from worker.store import Leases, Store


@pytest.fixture
async def leases(store: Store) -> AsyncIterator[Leases]:
    yield Leases(store)


async def test_one_holder_at_a_time(leases: Leases) -> None:
    assert await leases.acquire("invoice/o/1", "a", 60)
    assert not await leases.acquire("invoice/o/1", "b", 60)
    assert await leases.acquire("invoice/o/1", "a", 60)  # the holder may take it again
    await leases.release("invoice/o/1", "b")  # not b's: nothing happens
    assert not await leases.acquire("invoice/o/1", "b", 60)
    await leases.release("invoice/o/1", "a")
    assert await leases.acquire("invoice/o/1", "b", 60)


async def test_an_expired_lease_is_taken_over(leases: Leases) -> None:
    assert await leases.acquire("poll/o", "crashed", 0.05)
    await asyncio.sleep(0.1)
    assert await leases.acquire("poll/o", "b", 60)
    assert not await leases.renew("poll/o", "crashed", 60)
    assert await leases.renew("poll/o", "b", 60)


async def test_concurrent_acquires_have_exactly_one_winner(leases: Leases) -> None:
    results = await asyncio.gather(*(leases.acquire("race", f"w{i}", 60) for i in range(20)))
    assert sum(results) == 1
