"""In-process retries of transient BC failures, honouring ``Retry-After``.

The worker has a retry ladder of its own (minutes to hours), so waiting here is short: a few
attempts, a capped total wait. When BC asks for a longer pause than is left, the error is raised
at once with its ``retry_after`` so the caller can park the message.

:func:`call` is the hot path (every BC request goes through it); :func:`retrying` is the same
policy as a tenacity loop for code that wants one. Both share the wait and stop rules below.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState

from worker.bc.errors import BcThrottled, BcUnavailable

# One generator for the jitter: ``random.Random()`` seeds itself from os.urandom, which cost
# ~120 µs on every BC request when it was made per call (make bench, scenario 1 profile).
_JITTER = random.Random()

T = TypeVar("T")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None for a missing or unreadable header; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying in process before handing the failure to the caller."""

    max_attempts: int = 4
    max_wait_s: float = 30.0  # total sleep across attempts
    base_s: float = 0.5  # first backoff (exponential, full jitter)
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_wait_s < 0:
            raise ValueError("max_attempts must be >= 1 and max_wait_s >= 0")


def retryable(exc: BaseException) -> bool:
    """Errors that another try may fix; the transport marks ambiguous writes non-retryable."""
    return isinstance(exc, BcThrottled | BcUnavailable) and exc.retryable


def _sleep_for(policy: RetryPolicy, exc: BaseException, attempt: int, rand: random.Random) -> float:
    """Exponential backoff with full jitter, or the server's ``Retry-After`` plus a little."""
    hinted = getattr(exc, "retry_after", None)
    if isinstance(hinted, int | float) and hinted > 0:
        # A little jitter on top, so callers throttled together do not return together.
        return float(hinted) + rand.uniform(0, min(1.0, 0.1 * float(hinted)))
    ceiling = min(policy.max_backoff_s, policy.base_s * 2 ** (attempt - 1))
    return rand.uniform(0, ceiling)


def _give_up(policy: RetryPolicy, attempt: int, slept: float, upcoming: float) -> bool:
    """Attempts used up, or the next sleep would pass the total wait cap."""
    return attempt >= policy.max_attempts or slept + upcoming > policy.max_wait_s


async def call(
    policy: RetryPolicy,
    fn: Callable[[], Awaitable[T]],
    *,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """``await fn()`` with the policy of :func:`retrying`; the last error is re-raised.

    A plain loop: building a tenacity ``AsyncRetrying`` per BC request cost ~15 µs of CPU
    (make bench, scenario 1), and a request almost never needs a second attempt.
    """
    attempt = 1
    slept = 0.0
    while True:
        try:
            return await fn()
        except BaseException as exc:
            if not retryable(exc):
                raise
            upcoming = _sleep_for(policy, exc, attempt, rng or _JITTER)
            if _give_up(policy, attempt, slept, upcoming):
                raise
            if on_retry is not None:
                on_retry(exc, upcoming)
        slept += upcoming
        await asyncio.sleep(upcoming)
        attempt += 1


def retrying(
    policy: RetryPolicy,
    *,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: random.Random | None = None,
) -> AsyncRetrying:
    """A tenacity loop: exponential backoff with full jitter, ``Retry-After`` honoured, stop
    when attempts are used up or the next sleep would pass the total wait cap."""
    rand = rng or _JITTER

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return 0.0
        return _sleep_for(policy, exc, state.attempt_number, rand)

    def stop(state: RetryCallState) -> bool:
        return _give_up(policy, state.attempt_number, state.idle_for, state.upcoming_sleep)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.upcoming_sleep)

    def should_retry(state: RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed:
            return False
        exc = state.outcome.exception()
        return exc is not None and retryable(exc)

    return AsyncRetrying(
        retry=should_retry,
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
