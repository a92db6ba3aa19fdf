"""Clocks a test moves by hand, for the parts that take a ``clock``: waiting for a TTL, a
window or a mark is then one ``advance()``, never a sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """A monotonic clock (``time.monotonic``'s place) that stands still until advanced."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WallClock:
    """The real UTC time plus what the test advanced it by (``utcnow``'s place): the product's
    rows written meanwhile with the real time stay in the past."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
