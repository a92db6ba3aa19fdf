"""Retry-After parsing and the in-process retry policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.settings import FAST_RETRY
from worker.bc.errors import BcAuthError, BcThrottled, BcUnavailable, BcValidationError
from worker.bc.retry import RetryPolicy, call, parse_retry_after, retrying

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def test_retry_after_seconds() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Fri, 20 Nov 2026 12:00:30 GMT", now=NOW) == 30.0
    assert parse_retry_after("Fri, 20 Nov 2026 11:59:00 GMT", now=NOW) == 0.0


@given(st.integers(min_value=0, max_value=86_400))
def test_retry_after_date_round_trip(seconds: int) -> None:
    header = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("bad", [None, "", "soon", "nan", "inf", "Fri, 99 Foo 2026"])
def test_retry_after_garbage_is_ignored(bad: str | None) -> None:
    assert parse_retry_after(bad) is None


class Flaky:
    """An operation that fails with the given errors, then returns 'done'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def run(
    op: Flaky, policy: RetryPolicy, slept: list[float] | None = None, *, impl: str = "call"
) -> str:
    def on_retry(exc: BaseException, sleep: float) -> None:
        if slept is not None:
            slept.append(sleep)

    if impl == "call":
        return await call(policy, op, on_retry=on_retry, rng=random.Random(1))
    async for attempt in retrying(policy, on_retry=on_retry, rng=random.Random(1)):
        with attempt:
            return await op()
    raise AssertionError("unreachable")


# The hand-written loop (every BC request) and the tenacity loop keep the same policy.
IMPLS = pytest.mark.parametrize("impl", ["call", "tenacity"])


@IMPLS
async def test_transient_errors_are_retried_until_success(impl: str) -> None:
    op = Flaky(BcThrottled("429", retry_after=0.01), BcUnavailable("503"))
    slept: list[float] = []
    assert await run(op, FAST_RETRY, slept, impl=impl) == "done"
    assert op.calls == 3
    assert slept[0] >= 0.01  # Retry-After honoured


@IMPLS
async def test_attempts_are_bounded(impl: str) -> None:
    op = Flaky(*(BcUnavailable("503") for _ in range(10)))
    with pytest.raises(BcUnavailable):
        await run(op, FAST_RETRY, impl=impl)
    assert op.calls == FAST_RETRY.max_attempts


@IMPLS
async def test_long_retry_after_is_handed_to_the_caller_at_once(impl: str) -> None:
    op = Flaky(BcThrottled("429", retry_after=120.0))
    with pytest.raises(BcThrottled) as info:
        await run(op, RetryPolicy(max_attempts=5, max_wait_s=30.0), impl=impl)
    assert op.calls == 1
    assert info.value.retry_after == 120.0


@pytest.mark.parametrize(
    "error",
    [
        BcValidationError("bad"),
        BcAuthError("no"),
        BcUnavailable("timed out POST", retryable=False),
    ],
)
@IMPLS
async def test_non_retryable_errors_are_raised_at_once(error: Exception, impl: str) -> None:
    op = Flaky(error)
    with pytest.raises(type(error)):
        await run(op, FAST_RETRY, impl=impl)
    assert op.calls == 1


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@IMPLS
async def test_total_wait_is_capped(impl: str) -> None:
    # Retry-After 0.3 s each time, 0.5 s of waiting allowed: one retry, then the error.
    op = Flaky(*(BcThrottled("429", retry_after=0.3) for _ in range(5)))
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=10, max_wait_s=0.5)
    with pytest.raises(BcThrottled):
        await run(op, policy, slept, impl=impl)
    assert op.calls == 2
    assert len(slept) == 1


async def test_both_loops_sleep_alike() -> None:
    errors = [BcUnavailable("503"), BcThrottled("429", retry_after=0.01), BcUnavailable("503")]
    slept_call: list[float] = []
    slept_tenacity: list[float] = []
    assert await run(Flaky(*errors), FAST_RETRY, slept_call, impl="call") == "done"
    assert await run(Flaky(*errors), FAST_RETRY, slept_tenacity, impl="tenacity") == "done"
    assert slept_call == slept_tenacity
