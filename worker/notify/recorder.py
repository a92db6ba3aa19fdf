"""The observer that turns consumer outcomes into pending notification items."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Observer, Outcome, WaitingReport, subject_of
from worker.notify.store import WAITING, NewItem, NotificationRepository

log = structlog.get_logger(__name__)

# How long a process trusts its copy of an organization's open failures. A failure another
# process records is seen at most this late; a success inside that gap is not reported as
# "resolved" (the failure then stays in the digest), which is rare and harmless.
OPEN_FAILURES_TTL_S = 2.0
# Above this many organizations in the cache, expired entries are dropped (memory follows the
# organizations active within the TTL, not every organization that ever had an event).
SWEEP_ABOVE = 1024


def needs_a_person(report: FailureReport) -> bool:
    """Dead letters and failures flagged ``notify_now``; failures still being retried do not."""
    return report.final or report.notify_now


class NotificationRecorder(Observer):
    """Records failures that need a person, the later success of such an object, and the
    warnings of a success (values BC could not take, left out).

    Called after the outcome is durable, so a recorded item is never about a message that
    could still be lost; the digest service sends what is recorded.
    """

    def __init__(
        self,
        repository: NotificationRepository,
        *,
        ttl_s: float = OPEN_FAILURES_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self._ttl_s = ttl_s
        self._clock = clock
        # org → (valid until, its open failures); one read per organization and TTL instead of
        # one per successful event, which cost ~1 ms of CPU each (make bench, scenario 1).
        self._open: dict[str, tuple[float, set[tuple[str, str]]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _open_failures(self, org: str) -> set[tuple[str, str]]:
        cached = self._open.get(org)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        async with self._locks.setdefault(org, asyncio.Lock()):
            cached = self._open.get(org)
            if cached is not None and cached[0] > self._clock():
                return cached[1]
            keys = await self.repository.open_failures(org)
            self._open[org] = (self._clock() + self._ttl_s, keys)
        if len(self._open) > SWEEP_ABOVE:
            self._sweep()
        return keys

    def _sweep(self) -> None:
        """Forget expired copies and the locks nobody holds (a later read makes them anew)."""
        now = self._clock()
        for key in [k for k, (until, _) in self._open.items() if until <= now]:
            del self._open[key]
        for key in [k for k, lock in self._locks.items() if not lock.locked()]:
            del self._locks[key]

    async def on_failure(self, report: FailureReport) -> None:
        if not needs_a_person(report):
            return
        if not report.org:
            # Without an organization there is nobody to tell; ops see it in the dead letters.
            log.warning("notify.without_organization", code=report.code)
            return
        await self.repository.add_failure(report.org, **_item(report))
        cached = self._open.get(report.org)
        if cached is not None and report.object_type and report.moment_id:
            cached[1].add((report.object_type, report.moment_id))

    async def on_waiting(self, report: WaitingReport) -> None:
        """A person must act in BC (e.g. approve an invoice): it reaches the digest as a
        warning line, never as an open failure, so a later success resolves nothing."""
        await self.repository.add_warning(report.org, kind=WAITING, **_item(report))

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        if outcome.kind != "succeeded":
            return
        object_type, moment_id, number = subject_of(event)
        for warning in outcome.warnings:
            await self.repository.add_warning(
                event.org,
                code=warning.code,
                message=warning.message,
                object_type=object_type,
                moment_id=moment_id,
                moment_number=number,
                event_id=event.id,
            )
        if object_type is None or moment_id is None:
            return
        open_failures = await self._open_failures(event.org)
        if (object_type, moment_id) not in open_failures:
            return
        open_failures.discard((object_type, moment_id))
        await self.repository.resolve(
            event.org, object_type, moment_id, moment_number=number, event_id=event.id
        )


def _item(report: FailureReport | WaitingReport) -> NewItem:
    """The notification item of a failed or waiting delivery."""
    return NewItem(
        code=report.code,
        message=report.message,
        object_type=report.object_type,
        moment_id=report.moment_id,
        moment_number=report.moment_number,
        event_id=report.event_id,
    )
