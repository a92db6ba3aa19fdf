"""Records the last success and failure per organization and object type (the status endpoint)."""

from __future__ import annotations

from typing import Any, Protocol

from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Observer, Outcome


class FailureRecorder(Protocol):
    async def record_failure(
        self, org_id: str, object_type: str, code: str, message: str
    ) -> None: ...


class StatusObserver(Observer):
    """Failures that reached a person's attention (dead letters) go to the status table.

    Successes are recorded by the handlers themselves (they know the BC reference).
    """

    def __init__(self, outcomes: FailureRecorder) -> None:
        self.outcomes = outcomes

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        return None

    async def on_failure(self, report: FailureReport) -> None:
        if report.org and report.object_type and (report.final or report.notify_now):
            await self.outcomes.record_failure(
                report.org, report.object_type, report.code, report.message
            )
