"""worker.runtime.KeyedLocks: one lock per key, alive only while held or awaited."""

from __future__ import annotations

import asyncio
import gc

from worker.runtime import KeyedLocks


async def test_one_key_one_lock_while_it_is_held() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks.for_key("org-1"):
        assert locks.for_key("org-1").locked()
        assert not locks.for_key("org-2").locked()
        assert len(locks) >= 1
    gc.collect()
    assert len(locks) == 0  # nobody holds or waits for a lock: none is kept


async def test_tasks_of_one_key_take_turns_and_other_keys_do_not_wait() -> None:
    locks: KeyedLocks[tuple[str, str]] = KeyedLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def hold(key: tuple[str, str], name: str) -> None:
        async with locks.for_key(key):
            order.append(f"{name} in")
            if name == "first":
                await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(hold(("t", "a"), "first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold(("t", "a"), "second"))
    other = asyncio.create_task(hold(("t", "b"), "other"))
    await asyncio.sleep(0.01)
    assert order == ["first in", "other in", "other out"]
    release.set()
    await asyncio.gather(first, second, other)
    assert order[3:] == ["first out", "second in", "second out"]
