"""BC online service limits per user/service principal (bc-api §6): concurrency, queue, rate.

Per subject (tenant + client id of the bearer token): at most ``max_in_flight`` requests are
processed at once; further ones wait in a FIFO queue; a queue already holding ``max_queue``
requests answers 429; a request waiting longer than ``queue_timeout_s`` answers 503. A sliding
window of ``rate_limit`` requests per ``rate_window_s`` answers 429 with ``Retry-After``
(UNCONFIRMED for 429 in bc-api §6 → we send it, as the header is what clients should honour).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

Subject = tuple[str, str]  # (tenant id, client id)


@dataclass
class LimitsConfig:
    """Everything ``PATCH /_emulator/limits`` can change."""

    max_in_flight: int = 5
    max_queue: int = 95
    queue_timeout_s: float = 480.0  # BC: queued > 8 min → 503
    rate_limit: int = 6000
    rate_window_s: float = 300.0
    retry_after_s: float | None = None  # fixed Retry-After for every 429 (None: computed)
    latency_ms: float = 0.0  # global latency added to every BC and Entra request
    token_lifetime_s: int = 3599  # msal never caches tokens living < 300 s
    max_page_size: int = 20000
    batch_max_operations: int = 100
    request_log_size: int = 20000

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f for f in fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown limit {key!r}; known: {sorted(names)}")
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"limit {key!r} must be a number")
            if value is None and key != "retry_after_s":
                raise ValueError(f"limit {key!r} cannot be null")
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LimitExceeded(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


@dataclass
class SubjectState:
    in_flight: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    window: deque[float] = field(default_factory=deque)
    max_in_flight_seen: int = 0
    max_queued_seen: int = 0
    total_requests: int = 0
    throttled_429: int = 0
    rejected_503: int = 0
    token_requests: int = 0

    def stats(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "queued": len(self.waiters),
            "max_in_flight": self.max_in_flight_seen,
            "max_queued": self.max_queued_seen,
            "total_requests": self.total_requests,
            "throttled_429": self.throttled_429,
            "rejected_503": self.rejected_503,
            "token_requests": self.token_requests,
        }


class Limiter:
    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        self.subjects: dict[Subject, SubjectState] = {}

    def state(self, subject: Subject) -> SubjectState:
        st = self.subjects.get(subject)
        if st is None:
            st = self.subjects[subject] = SubjectState()
        return st

    def reset(self, tenant_id: str | None = None) -> None:
        for key in list(self.subjects):
            if tenant_id is None or key[0] == tenant_id:
                st = self.subjects[key]
                if st.in_flight == 0 and not st.waiters:
                    del self.subjects[key]
                else:  # requests still running keep their slots; forget the history only
                    st.window.clear()
                    st.max_in_flight_seen = st.in_flight
                    st.max_queued_seen = len(st.waiters)
                    st.total_requests = st.throttled_429 = st.rejected_503 = st.token_requests = 0

    def take_rate(self, st: SubjectState, cost: int = 1) -> None:
        """Count ``cost`` requests in the sliding window, or raise 429 with a Retry-After."""
        cfg = self.config
        now = time.monotonic()
        horizon = now - cfg.rate_window_s
        w = st.window
        while w and w[0] <= horizon:
            w.popleft()
        if len(w) + cost > cfg.rate_limit:
            st.throttled_429 += 1
            if cfg.retry_after_s is not None:
                retry = cfg.retry_after_s
            else:
                # when enough of the oldest entries leave the window for this request to fit
                idx = min(len(w) - 1, max(0, len(w) + cost - cfg.rate_limit - 1))
                retry = max(1.0, math.ceil(w[idx] - horizon)) if w else 1.0
            raise LimitExceeded(429, retry)
        w.extend([now] * cost)

    async def acquire(self, st: SubjectState) -> None:
        cfg = self.config
        if st.in_flight < cfg.max_in_flight and not st.waiters:
            st.in_flight += 1
            st.max_in_flight_seen = max(st.max_in_flight_seen, st.in_flight)
            return
        if len(st.waiters) >= cfg.max_queue:
            st.throttled_429 += 1
            raise LimitExceeded(429, cfg.retry_after_s if cfg.retry_after_s is not None else 1.0)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        st.waiters.append(fut)
        st.max_queued_seen = max(st.max_queued_seen, len(st.waiters))
        try:
            await asyncio.wait_for(asyncio.shield(fut), cfg.queue_timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if fut.done() and not fut.cancelled():
                if isinstance(exc, TimeoutError):
                    return  # the slot arrived together with the timeout: keep it
                self.release(st)
                raise
            fut.cancel()
            with contextlib.suppress(ValueError):
                st.waiters.remove(fut)
            if isinstance(exc, TimeoutError):
                st.rejected_503 += 1
                raise LimitExceeded(503, None) from None
            raise

    def release(self, st: SubjectState) -> None:
        """Hand the slot to the next live waiter, or free it."""
        while st.waiters:
            fut = st.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        st.in_flight -= 1

    def all_stats(self) -> list[dict[str, Any]]:
        return [
            {"tenant": t, "client_id": c, **st.stats()}
            for (t, c), st in sorted(self.subjects.items())
        ]
