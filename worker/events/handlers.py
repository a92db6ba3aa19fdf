"""The handler contract between the consumer and ``worker.sync``: event in, outcome out.

A handler returns an :class:`Outcome` or raises one of the failure classes in
``worker.errors``. It knows nothing of AMQP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.events.envelope import Event

# "superseded": a newer change of the object is already in BC (the sync ledger's rule).
OutcomeKind = Literal["succeeded", "skipped", "waiting", "superseded"]


@dataclass(frozen=True)
class DataWarning:
    """A value BC cannot take that was left out so the object still went through (e.g. a phone
    number with letters): not a failure, but a person should correct it in Moment.

    ``code`` is a catalogue code (``worker.errors``); ``message`` names the object, the field
    and the value, and what to fix."""

    code: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What a handler did. ``waiting``: nothing is wrong with the event or the settings, but
    the object cannot be finished until a person acts in BC (e.g. an invoice waiting for
    approval). The consumer acks it (retrying cannot help, a dead letter would be no error),
    counts and logs it, and reports it to the observers' ``on_waiting``; no ``bc.*.exported``
    is sent for it."""

    kind: OutcomeKind
    reason: str | None = None  # skipped: not_configured, export_off, ...; waiting: its code
    detail: dict[str, Any] | None = None
    message: str | None = None  # waiting: what a person reads, in plain words
    warnings: tuple[DataWarning, ...] = ()

    @classmethod
    def ok(cls, *, warnings: Sequence[DataWarning] = (), **detail: Any) -> Outcome:
        return cls("succeeded", detail=detail or None, warnings=tuple(warnings))

    @classmethod
    def skipped(cls, reason: str) -> Outcome:
        return cls("skipped", reason=reason)

    @classmethod
    def waiting(cls, code: str, message: str, **detail: Any) -> Outcome:
        """Waiting for a person in BC; ``code`` from the catalogue (worker.errors), e.g.
        ``BC-INVOICE-AWAITING-APPROVAL``."""
        return cls("waiting", reason=code, detail=detail or None, message=message)


Handler = Callable[[Event[Any]], Awaitable[Outcome]]
Registry = dict[str, Handler]


@dataclass(frozen=True)
class DeadLetterCopy:
    """The message a final failure put in the dead-letter queue, as published (confirmed by
    the broker before any observer hears of it): what the dead-letter index records."""

    body: bytes = field(repr=False)
    headers: Mapping[str, Any] = field(repr=False)
    content_type: str | None = None
    message_id: str | None = None


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
    # BC's own error code when BC answered (or the client's, e.g. CircuitOpen: the circuit
    # breaker refused the request), for the console's per-organization health signals.
    bc_code: str | None = None
    dead_letter: DeadLetterCopy | None = None  # final failures: the dead letter published


@dataclass(frozen=True)
class WaitingReport:
    """One delivery acked as waiting for a person in BC, as observers (status, notifications)
    see it. ``message`` is plain words for the organization's admin; ``ref`` names the BC
    record (e.g. the draft invoice number)."""

    org: str
    event_id: str
    event_type: str
    object_type: str | None
    moment_id: str | None
    moment_number: str | None
    code: str
    message: str
    ref: str | None = None


class Observer:
    """Hooks called after an outcome is durable. Default: do nothing.

    ``on_success`` sees succeeded and skipped deliveries, ``on_waiting`` the waiting ones,
    ``on_failure`` retries and dead letters.
    """

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        return None

    async def on_waiting(self, report: WaitingReport) -> None:
        return None

    async def on_failure(self, report: FailureReport) -> None:
        return None


def subject_of(event: Event[Any]) -> tuple[str | None, str | None, str | None]:
    """(object type, Moment id, Moment number) of an incoming event: ("invoice", "i-1", "1864");
    a credit note (an invoice event with ``kind`` credit_note or a negative total) is
    ("credit_note", …)."""
    for name in ("invoice", "customer", "project"):
        obj = getattr(event.data, name, None)
        if obj is not None:
            if name == "invoice" and getattr(obj, "is_credit_note", False):
                name = "credit_note"
            return name, getattr(obj, "id", None), getattr(obj, "number", None)
    return None, None, None
