"""Moment's events: the CloudEvents envelope, the event models (the source of ``schemas/``),
parsing, and what a handler returns. Transport-free."""

from worker.events.envelope import CONTENT_TYPE, Event, build, parse
from worker.events.handlers import FailureReport, Handler, Observer, Outcome, Registry, subject_of

__all__ = [
    "CONTENT_TYPE",
    "Event",
    "FailureReport",
    "Handler",
    "Observer",
    "Outcome",
    "Registry",
    "build",
    "parse",
    "subject_of",
]
