"""Records the last success, failure and waiting object per organization and object type (the
status endpoint's ``objects`` section)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Observer, Outcome, WaitingReport
from worker.runtime import FlushEvery

log = structlog.get_logger(__name__)

# How often coalesced successes reach the status table (at most this much is lost in a crash).
SUCCESS_FLUSH_S = 1.0


class FailureRecorder(Protocol):
    async def record_failure(
        self, org_id: str, object_type: str, code: str, message: str
    ) -> None: ...

    async def record_waiting(
        self, org_id: str, object_type: str, ref: str | None, code: str, message: str
    ) -> None: ...


class StatusObserver(Observer):
    """Failures that reached a person's attention (dead letters) and objects waiting for a
    person in BC (e.g. an invoice waiting for approval) go to the status table.

    Successes are recorded by the handlers themselves (they know the BC reference).
    """

    def __init__(self, outcomes: FailureRecorder) -> None:
        self.outcomes = outcomes

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        return None

    async def on_waiting(self, report: WaitingReport) -> None:
        if report.object_type:
            await self.outcomes.record_waiting(
                report.org, report.object_type, report.moment_number, report.code, report.message
            )

    async def on_failure(self, report: FailureReport) -> None:
        if report.org and report.object_type and (report.final or report.notify_now):
            await self.outcomes.record_failure(
                report.org, report.object_type, report.code, report.message
            )


class SuccessesRecorder(Protocol):
    async def record_successes(
        self, items: Sequence[tuple[str, str, str | None, datetime]]
    ) -> None: ...


class SuccessBuffer(FlushEvery):
    """The handlers' ``outcomes``: keeps the latest success per (organization, object type)
    and writes them once per ``interval`` in one transaction.

    The status table holds only the last success, so coalescing loses nothing but up to
    ``interval`` seconds in a crash; one write transaction per event was the largest cost of
    the hot path (``make bench``, scenario 1).
    """

    name = "success-buffer"

    def __init__(self, store: SuccessesRecorder, interval: float = SUCCESS_FLUSH_S) -> None:
        self._store = store
        self._interval = interval
        self._pending: dict[tuple[str, str], tuple[str | None, datetime]] = {}

    async def record_success(self, org_id: str, object_type: str, ref: str | None = None) -> None:
        self._pending[(org_id, object_type)] = (ref, datetime.now(UTC))

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._store.record_successes([(o, t, r, at) for (o, t), (r, at) in batch.items()])
        except Exception:
            log.warning("status.record_successes_failed", count=len(batch))
            for key, value in batch.items():
                self._pending.setdefault(key, value)
