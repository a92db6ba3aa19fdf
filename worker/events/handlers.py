"""The handler contract between the consumer and ``worker.sync``: event in, outcome out.

A handler returns an :class:`Outcome` or raises one of the failure classes in
``worker.errors``. It knows nothing of AMQP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from worker.events.envelope import Event

# "superseded": a newer change of the object is already in BC (the sync ledger's rule).
OutcomeKind = Literal["succeeded", "skipped", "superseded"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str | None = None  # why it was skipped: not_configured, export_off, ...
    detail: dict[str, Any] | None = None

    @classmethod
    def ok(cls, **detail: Any) -> Outcome:
        return cls("succeeded", detail=detail or None)

    @classmethod
    def skipped(cls, reason: str) -> Outcome:
        return cls("skipped", reason=reason)


Handler = Callable[[Event[Any]], Awaitable[Outcome]]
Registry = dict[str, Handler]


@dataclass(frozen=True)
class FailureReport:
    """One failed delivery, as observers (notifications, status) see it."""

    org: str | None
    event_id: str | None
    event_type: str | None
    object_type: str | None
    moment_id: str | None
    moment_number: str | None
    code: str
    message: str
    attempts: int
    final: bool  # dead-lettered (True) or going round the ladder again (False)
    notify_now: bool = False  # e.g. rejected credentials: a person must hear even if retried


class Observer:
    """Hooks called after an outcome is durable. Default: do nothing."""

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        return None

    async def on_failure(self, report: FailureReport) -> None:
        return None


def subject_of(event: Event[Any]) -> tuple[str | None, str | None, str | None]:
    """(object type, Moment id, Moment number) of an incoming event: ("invoice", "i-1", "1864")."""
    for name in ("invoice", "customer", "project"):
        obj = getattr(event.data, name, None)
        if obj is not None:
            return name, getattr(obj, "id", None), getattr(obj, "number", None)
    return None, None, None
