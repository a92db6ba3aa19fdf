"""The observer that turns consumer outcomes into pending notification items."""

from __future__ import annotations

from typing import Any

import structlog

from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Observer, Outcome, subject_of
from worker.notify.store import NotificationRepository

log = structlog.get_logger(__name__)


def needs_a_person(report: FailureReport) -> bool:
    """Dead letters and failures flagged ``notify_now``; failures still being retried do not."""
    return report.final or report.notify_now


class NotificationRecorder(Observer):
    """Records failures that need a person, and the later success of such an object.

    Called after the outcome is durable, so a recorded item is never about a message that
    could still be lost; the digest service sends what is recorded.
    """

    def __init__(self, repository: NotificationRepository) -> None:
        self.repository = repository

    async def on_failure(self, report: FailureReport) -> None:
        if not needs_a_person(report):
            return
        if not report.org:
            # Without an organization there is nobody to tell; ops see it in the dead letters.
            log.warning("notification_without_organization", code=report.code)
            return
        await self.repository.add_failure(
            report.org,
            code=report.code,
            message=report.message,
            object_type=report.object_type,
            moment_id=report.moment_id,
            moment_number=report.moment_number,
            event_id=report.event_id,
        )

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        if outcome.kind != "succeeded":
            return
        object_type, moment_id, number = subject_of(event)
        if object_type is None or moment_id is None:
            return
        await self.repository.resolve(
            event.org, object_type, moment_id, moment_number=number, event_id=event.id
        )
