"""Per-subject request limits: BC online serves each service principal (tenant, client) at most
5 requests at once and 6,000 per 5-minute sliding window (bc-api.md §6).

One :class:`SubjectLimiter` per subject, so one organization's limits never slow another's. The
limiter adapts to 429s: it halves the subject's allowed concurrency and pauses the subject until
``Retry-After``; successes then restore one slot at a time. It is also the subject's circuit
breaker: after several failures in a row (5xx, timeouts, refused connections) requests fail at
once for a while (1 s, doubling up to a minute) instead of holding the worker's message slots
while a broken BC answers slowly or not at all; then one request at a time probes it.

Memory is bounded: a window is a fixed number of time buckets, and the registry holds at most
``max_subjects`` limiters beyond those it must keep (see :meth:`Limiters._prune`), so it depends
on the organizations active in the last window, not on the configured ones.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from worker.bc.errors import BcThrottled, BcUnavailable

# Successes needed (since the last cut) before the concurrency limit grows back by one.
RECOVERY_SUCCESSES = 10
# Pause after a 429 that carried no Retry-After.
DEFAULT_PAUSE_S = 1.0
# Failures in a row (5xx, timeouts, refused connections) that open the circuit, and how long it
# stays open: the first time BREAKER_FIRST_OPEN_S, doubling while the probes fail.
BREAKER_FAILURES = 5
BREAKER_FIRST_OPEN_S = 1.0
BREAKER_MAX_OPEN_S = 60.0
# A limiter with at most this share of its budget used in the window may be forgotten to make
# room: its successor could send that many requests more than BC allows (BC then answers 429,
# which the new limiter adapts to), never more.
EVICTABLE_BUDGET_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """Limits of one subject (BC online's documented values by default)."""

    max_concurrency: int = 5
    budget: int = 6000
    window_s: float = 300.0
    bucket_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.budget < 1 or self.window_s <= 0:
            raise ValueError("limits must be positive")
        if not 0 < self.bucket_s <= self.window_s:
            raise ValueError("bucket_s must be in (0, window_s]")


class SubjectLimiter:
    """Concurrency slots plus a sliding-window request budget for one subject.

    The window is kept as counts per ``bucket_s`` bucket; a bucket is counted until it has
    entirely left the window, so the limiter may under-use the budget slightly but never
    exceeds it.
    """

    def __init__(
        self, config: LimitConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or LimitConfig()
        self._clock = clock
        self._cond = asyncio.Condition()
        self._limit = self.config.max_concurrency
        self._in_flight = 0
        self._waiting = 0
        self._paused_until = 0.0
        self._successes = 0
        self._buckets: deque[list[float]] = deque()  # [bucket start, count]
        self._used = 0
        self.last_used = clock()
        self.max_in_flight = 0
        self.throttle_events = 0
        self._failures = 0  # in a row
        self._open_until = 0.0
        self._open_s = 0.0  # the last open period (0 while closed)
        self.breaker_openings = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """Concurrency currently allowed (lower than the maximum after a 429)."""
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def idle(self) -> bool:
        return self._in_flight == 0 and self._waiting == 0

    def evictable(self, *, stale: bool) -> bool:
        """Whether forgetting this limiter loses nothing that keeps BC safe.

        Never while requests are in flight or waiting (a new limiter would let five more in at
        once), while paused after a 429 or while the circuit is open. ``stale`` (unused for a
        whole window): its window is empty, and a breaker that still counts failures after
        that long only costs the next requests a fresh count. Otherwise also only when its
        breaker saw no failure and it used little of its budget (EVICTABLE_BUDGET_SHARE).
        """
        now = self._clock()
        if not self.idle or self._paused_until > now or self._open_until > now:
            return False
        if stale:
            return True
        return self._failures == 0 and (
            self.used_in_window() <= self.config.budget * EVICTABLE_BUDGET_SHARE
        )

    def paused_for(self) -> float:
        """Seconds until the subject may send again after a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def open_for(self) -> float:
        """Seconds until the circuit lets a probe through (0 when closed or half-open)."""
        return max(0.0, self._open_until - self._clock())

    def used_in_window(self) -> int:
        self._expire(self._clock())
        return self._used

    def _expire(self, now: float) -> None:
        window = self.config.window_s
        while self._buckets and self._buckets[0][0] + self.config.bucket_s <= now - window:
            self._used -= int(self._buckets.popleft()[1])

    def _record(self, now: float) -> None:
        start = math.floor(now / self.config.bucket_s) * self.config.bucket_s
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([start, 1])
        self._used += 1

    def _budget_wait(self, now: float) -> float:
        """Seconds until one more request fits in the window (0 when it fits now)."""
        self._expire(now)
        if self._used < self.config.budget:
            return 0.0
        # Drop buckets from the oldest until the budget frees a request.
        freed = 0
        for start, count in self._buckets:
            freed += int(count)
            if self._used - freed < self.config.budget:
                return max(0.0, start + self.config.bucket_s + self.config.window_s - now)
        return self.config.window_s

    # -- acquire / release ---------------------------------------------------------------------

    async def acquire(self, max_wait: float, queue_wait: float | None = None) -> None:
        """Take a slot.

        Waits at most ``max_wait`` seconds for a pause (after a 429) or the budget, and at most
        ``queue_wait`` (default ``max_wait``) in total for a free slot. Raises
        :class:`BcThrottled` at once (with ``retry_after``) when the subject is paused or out of
        budget for longer than ``max_wait``, so the caller can park its work instead of holding
        it in memory.
        """
        start = self._clock()
        timed_deadline = start + max_wait
        deadline = start + max(max_wait, queue_wait if queue_wait is not None else max_wait)
        async with self._cond:
            self._waiting += 1
            try:
                while True:
                    now = self._clock()
                    if self._open_until > now:
                        raise BcUnavailable(
                            f"Business Central failed {self._failures} times in a row for this "
                            "app; its requests pause for a moment.",
                            code="CircuitOpen",
                            retry_after=self._open_until - now,
                            retryable=False,  # the pause is the backoff: park the work
                        )
                    # Half-open (failures still counted): one probe at a time.
                    limit = 1 if self._failures >= BREAKER_FAILURES else self._limit
                    pause = self._paused_until - now
                    if pause > 0:
                        timed = pause
                    elif self._in_flight >= limit:
                        timed = None
                    else:
                        timed = self._budget_wait(now)
                        if timed <= 0:
                            break
                    left = deadline - now
                    if timed is not None and timed > min(left, timed_deadline - now):
                        raise BcThrottled(
                            "Business Central's request limit for this app is reached; "
                            "try again later.",
                            retry_after=timed,
                            code="LocalRateLimit",
                        )
                    if left <= 0:
                        raise BcThrottled(
                            "Too many Business Central requests are queued for this app.",
                            retry_after=None,
                            code="LocalQueueTimeout",
                            retryable=False,  # it already waited its share
                        )
                    # asyncio.timeout, not wait_for: a cancelled wait_for around
                    # Condition.wait() can end in "Lock is not acquired" (seen under chaos).
                    with suppress(TimeoutError):
                        async with asyncio.timeout(left if timed is None else timed):
                            await self._cond.wait()
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                self._record(now)
                self.last_used = now
            finally:
                self._waiting -= 1

    async def release(
        self, *, throttled: bool = False, retry_after: float | None = None, failed: bool = False
    ) -> None:
        """Give the slot back; ``throttled`` when BC answered 429 to this request, ``failed``
        when it answered 5xx, timed out or could not be reached."""
        async with self._cond:
            self._in_flight -= 1
            now = self._clock()
            self.last_used = now
            if failed:
                self._failures += 1
                self._successes = 0
                # Stragglers sent before the circuit opened must not extend it.
                if self._failures >= BREAKER_FAILURES and self._open_until <= now:
                    self._open_s = (
                        BREAKER_FIRST_OPEN_S
                        if self._open_s == 0
                        else min(BREAKER_MAX_OPEN_S, self._open_s * 2)
                    )
                    self._open_until = now + self._open_s
                    self.breaker_openings += 1
                self._cond.notify_all()  # waiters fail fast now, or one probes
                return
            self._failures = 0
            self._open_s = 0.0
            if throttled:
                self.throttle_events += 1
                self._successes = 0
                self._limit = max(1, self._limit // 2)
                pause = DEFAULT_PAUSE_S if retry_after is None else max(0.0, retry_after)
                self._paused_until = max(self._paused_until, now + pause)
                self._cond.notify_all()  # every waiter re-times its wait to the pause
                return
            self._successes += 1
            if self._limit < self.config.max_concurrency and (
                self._successes >= RECOVERY_SUCCESSES
            ):
                self._limit += 1
                self._successes = 0
            # Wake only as many waiters as there are free slots (FIFO): with hundreds of one
            # organization's messages waiting, notify_all woke every one of them to let one in.
            self._cond.notify(max(1, self._limit - self._in_flight))

    @asynccontextmanager
    async def slot(
        self, max_wait: float, queue_wait: float | None = None
    ) -> AsyncIterator[SlotHandle]:
        """``async with limiter.slot(30) as s: …; s.throttled(retry_after)`` on a 429."""
        await self.acquire(max_wait, queue_wait)
        handle = SlotHandle()
        try:
            yield handle
        finally:
            await asyncio.shield(
                self.release(
                    throttled=handle.was_throttled,
                    retry_after=handle.retry_after,
                    failed=handle.was_failed,
                )
            )


class SlotHandle:
    """Lets the code holding a slot report a 429 or a failure before the slot is released."""

    __slots__ = ("retry_after", "was_failed", "was_throttled")

    def __init__(self) -> None:
        self.was_throttled = False
        self.retry_after: float | None = None
        self.was_failed = False

    def throttled(self, retry_after: float | None) -> None:
        self.was_throttled = True
        self.retry_after = retry_after

    def failed(self) -> None:
        """BC answered 5xx, timed out, or could not be reached (counts toward the breaker)."""
        self.was_failed = True


class Limiters:
    """The limiters of every subject, created on first use; idle ones are forgotten."""

    def __init__(
        self,
        config: LimitConfig | None = None,
        *,
        max_subjects: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or LimitConfig()
        self._clock = clock
        self._max = max_subjects
        self._by_subject: OrderedDict[Hashable, SubjectLimiter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_subject)

    def get(self, subject: Hashable) -> SubjectLimiter:
        limiter = self._by_subject.get(subject)
        if limiter is not None:
            self._by_subject.move_to_end(subject)
            return limiter
        if len(self._by_subject) >= self._max:
            self._prune()
        limiter = SubjectLimiter(self.config, clock=self._clock)
        self._by_subject[subject] = limiter
        return limiter

    def peek(self, subject: Hashable) -> SubjectLimiter | None:
        return self._by_subject.get(subject)

    def _prune(self) -> None:
        """Make room: drop every stale limiter (unused for a window), then the least recently
        used evictable ones down to three quarters of the cap (so a prune is amortized over
        many new subjects). Limiters that must be kept (:meth:`SubjectLimiter.evictable`) stay
        even beyond the cap: there are only as many as subjects busy right now."""
        now = self._clock()
        window = self.config.window_s
        for key in [
            k
            for k, lim in self._by_subject.items()
            if now - lim.last_used > window and lim.evictable(stale=True)
        ]:
            del self._by_subject[key]
        target = self._max - self._max // 4
        if len(self._by_subject) < self._max:
            return
        for key, lim in list(self._by_subject.items()):  # least recently used first
            if len(self._by_subject) <= target:
                break
            if lim.evictable(stale=False):
                del self._by_subject[key]
