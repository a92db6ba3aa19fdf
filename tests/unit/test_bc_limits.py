"""Per-subject limits: 5 in flight, a sliding-window budget, adaptive on 429, independent
subjects, bounded memory."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.clock import Clock
from worker.bc.errors import BcThrottled, BcUnavailable
from worker.bc.limits import (
    BREAKER_FAILURES,
    BREAKER_FIRST_OPEN_S,
    BREAKER_MAX_OPEN_S,
    RECOVERY_SUCCESSES,
    LimitConfig,
    Limiters,
    SubjectLimiter,
)


async def test_at_most_five_in_flight() -> None:
    limiter = SubjectLimiter()
    active = 0
    peak = 0
    done = 0

    async def call() -> None:
        nonlocal active, peak, done
        async with limiter.slot(max_wait=10):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.001)
            active -= 1
            done += 1

    await asyncio.gather(*(call() for _ in range(40)))
    assert done == 40
    assert peak == 5
    assert limiter.max_in_flight == 5
    assert limiter.in_flight == 0


async def test_budget_is_never_exceeded_in_a_window() -> None:
    clock = Clock()
    limiter = SubjectLimiter(LimitConfig(budget=10, window_s=60, bucket_s=10), clock=clock)
    for _ in range(10):
        await limiter.acquire(max_wait=0)
        await limiter.release()
    with pytest.raises(BcThrottled) as info:
        await limiter.acquire(max_wait=5)
    # The first bucket leaves the window 70 s after it started (conservative by one bucket).
    assert info.value.retry_after == pytest.approx(70.0)
    assert info.value.code == "LocalRateLimit"
    clock.now += 70
    await limiter.acquire(max_wait=0)
    await limiter.release()
    assert limiter.used_in_window() == 1


async def test_429_halves_concurrency_pauses_then_recovers() -> None:
    clock = Clock()
    limiter = SubjectLimiter(clock=clock)
    await limiter.acquire(max_wait=0)
    await limiter.release(throttled=True, retry_after=20)
    assert limiter.limit == 2
    assert limiter.paused_for() == pytest.approx(20)
    with pytest.raises(BcThrottled) as info:
        await limiter.acquire(max_wait=5)
    assert info.value.retry_after == pytest.approx(20)
    clock.now += 20
    for _ in range(RECOVERY_SUCCESSES * 3):
        await limiter.acquire(max_wait=0)
        await limiter.release()
    assert limiter.limit == 5


async def test_paused_waiters_resume_when_the_pause_ends() -> None:
    limiter = SubjectLimiter()
    await limiter.acquire(max_wait=0)
    await limiter.release(throttled=True, retry_after=0.05)
    await limiter.acquire(max_wait=5)  # waits out the 50 ms pause
    await limiter.release()
    assert limiter.throttle_events == 1


async def test_one_subject_throttled_does_not_hold_back_another() -> None:
    limiters = Limiters()
    a, b = limiters.get(("tenant-a", "app")), limiters.get(("tenant-b", "app"))
    for _ in range(5):
        await a.acquire(max_wait=0)  # A: every slot taken
    await a.release(throttled=True, retry_after=60)  # and paused
    for _ in range(5):
        await b.acquire(max_wait=0)  # B: all five at once, no wait
    assert b.in_flight == 5
    with pytest.raises(BcThrottled):
        await a.acquire(max_wait=0)


async def test_queue_wait_is_bounded() -> None:
    limiter = SubjectLimiter(LimitConfig(max_concurrency=1))
    await limiter.acquire(max_wait=0)
    with pytest.raises(BcThrottled) as info:
        await limiter.acquire(max_wait=0.01)
    assert info.value.code == "LocalQueueTimeout"
    assert limiter.in_flight == 1


async def test_cancelled_holder_gives_its_slot_back() -> None:
    limiter = SubjectLimiter(LimitConfig(max_concurrency=1))

    async def hold() -> None:
        async with limiter.slot(max_wait=1):
            await asyncio.sleep(10)

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await limiter.acquire(max_wait=0)
    assert limiter.in_flight == 1


async def test_registry_memory_is_bounded() -> None:
    clock = Clock()
    limiters = Limiters(max_subjects=8, clock=clock)
    for i in range(100):
        lim = limiters.get(("t", str(i)))
        await lim.acquire(max_wait=0)
        await lim.release()
        clock.now += 1
    assert len(limiters) <= 8
    busy = limiters.get(("busy", "x"))
    await busy.acquire(max_wait=0)
    for i in range(20):
        limiters.get(("more", str(i)))
    assert limiters.peek(("busy", "x")) is busy  # a subject with work in flight is kept


def test_window_memory_is_a_fixed_number_of_buckets() -> None:
    clock = Clock()
    limiter = SubjectLimiter(LimitConfig(budget=10**9, window_s=300, bucket_s=10), clock=clock)

    async def many() -> None:
        for _ in range(5000):
            await limiter.acquire(max_wait=0)
            await limiter.release()
            clock.now += 0.5

    asyncio.run(many())
    assert len(limiter._buckets) <= 31
    assert limiter.used_in_window() <= 620


async def fail_once(limiter: SubjectLimiter) -> None:
    async with limiter.slot(max_wait=1) as slot:
        slot.failed()


async def test_failures_in_a_row_open_the_circuit_then_one_probe_closes_it() -> None:
    clock = Clock()
    limiter = SubjectLimiter(clock=clock)
    for _ in range(BREAKER_FAILURES - 1):
        await fail_once(limiter)
    assert limiter.open_for() == 0  # not yet: a few failures are what retries are for
    await fail_once(limiter)
    assert limiter.open_for() == pytest.approx(BREAKER_FIRST_OPEN_S)
    # Open: callers fail at once (their work goes to the retry ladder, freeing its slot).
    with pytest.raises(BcUnavailable) as raised:
        await limiter.acquire(max_wait=30)
    assert raised.value.code == "CircuitOpen" and not raised.value.retryable
    assert raised.value.retry_after == pytest.approx(BREAKER_FIRST_OPEN_S)

    # Half-open: a failing probe reopens it for twice as long.
    clock.now += BREAKER_FIRST_OPEN_S
    await fail_once(limiter)
    assert limiter.open_for() == pytest.approx(2 * BREAKER_FIRST_OPEN_S)

    # A successful probe closes it; all five slots are back.
    clock.now += 2 * BREAKER_FIRST_OPEN_S
    async with limiter.slot(max_wait=1):
        pass
    assert limiter.open_for() == 0
    await asyncio.gather(*(limiter.acquire(max_wait=1) for _ in range(5)))
    assert limiter.in_flight == 5


async def test_half_open_lets_one_probe_through_at_a_time() -> None:
    limiter = SubjectLimiter()  # the real clock: the queue wait below is measured with it
    for _ in range(BREAKER_FAILURES):
        await fail_once(limiter)
    await asyncio.sleep(limiter.open_for())
    await limiter.acquire(max_wait=1)  # the probe
    with pytest.raises(BcThrottled):  # a second caller waits its queue share, then parks
        await limiter.acquire(max_wait=0.05, queue_wait=0.05)


async def test_the_open_period_is_capped() -> None:
    clock = Clock()
    limiter = SubjectLimiter(clock=clock)
    for _ in range(BREAKER_FAILURES + 12):
        clock.now += limiter.open_for()
        await fail_once(limiter)
    assert limiter.open_for() == pytest.approx(BREAKER_MAX_OPEN_S)


async def test_a_broken_subject_does_not_open_another_subjects_circuit() -> None:
    limiters = Limiters()
    for _ in range(BREAKER_FAILURES):
        await fail_once(limiters.get("broken"))
    assert limiters.get("broken").open_for() > 0
    async with limiters.get("healthy").slot(max_wait=1):
        pass
    assert limiters.get("healthy").open_for() == 0
