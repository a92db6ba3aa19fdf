"""One dead letter as people look at it, and the filters that select dead letters.

How the headers are read is :mod:`worker.messaging.headers`; this module adds what a person
needs on top: ids, the envelope's facts when headers are missing, redaction, the catalogue.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any, Literal, get_args

from aio_pika.abc import AbstractIncomingMessage

from worker.errors import info
from worker.log import redact, redact_text
from worker.messaging import headers as H
from worker.messaging.headers import iso
from worker.messaging.topology import DELIVERY_LIMIT

# The filters given by name (CLI options, API query parameters and replay body fields).
FILTER_FIELDS = ("org", "type", "code", "since", "until")
GroupBy = Literal["code", "org", "type"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)
Progress = Callable[[int, int], None]


class DlqError(Exception):
    """An operation could not run: queue missing, broker refused a publish, ..."""


class DlqBusy(DlqError):
    """Another dead-letter operation held the lock for longer than we were willing to wait."""


class DlqUnavailable(DlqError):
    """The broker cannot be reached (the message says so without the library's text)."""


class FilterError(ValueError):
    """A filter value is not valid; ``field`` names it (for CLI messages and API 422s)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


# --- times ---------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO date or date-time (UTC when no offset is given), or a relative ``30m``/``2h``/``7d``.

    Relative times count back from ``now``.
    """
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match[1]) * _UNIT_S[match[2].lower()]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date or date-time (2026-11-20, 2026-11-20T10:00Z) "
            "nor a relative time (30m, 2h, 7d)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- one dead letter -----------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Header values as JSON: AMQP tables may hold datetimes, bytes and decimals."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def redacted(value: Any) -> Any:
    """Defence in depth before anything is shown: mask secret-looking keys and text."""
    return redact(None, "", {"value": jsonable(value)})["value"]


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _subject(envelope: Mapping[str, Any]) -> str | None:
    """``invoice 1864`` from an event's data, like the consumer's ``x-bc-subject``."""
    data = envelope.get("data")
    if not isinstance(data, dict):
        return None
    for name in ("invoice", "customer", "project"):
        obj = data.get(name)
        if isinstance(obj, dict):
            number = H.text(obj.get("number")) or H.text(obj.get("id"))
            return f"{name} {number}" if number else name
    return None


def _deaths(headers: Mapping[str, Any]) -> list[dict[str, Any]]:
    deaths = headers.get("x-death")
    return [d for d in deaths if isinstance(d, dict)] if isinstance(deaths, list) else []


def body_id(body: bytes) -> str:
    """Stable id of a message without an event id: a hash of its body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as people look at it."""

    id: str  # the event id, or a body hash when there is none; what `show` takes
    event_id: str | None
    org: str | None
    type: str | None
    subject: str | None  # the Moment object, e.g. "invoice 1864"
    code: str
    error_class: str  # invalid | permanent | attempts_exhausted | delivery_limit | unknown
    message: str
    attempts: int | None
    first_failure: datetime | None
    last_failure: datetime | None
    routing_key: str | None  # the original routing key (= type), used by replay
    replay_id: str | None  # set when this dead letter is a replayed event that failed again
    body: bytes = field(repr=False)
    headers: Mapping[str, Any] = field(repr=False)
    content_type: str | None = field(default=None, repr=False)
    message_id: str | None = field(default=None, repr=False)

    @classmethod
    def from_message(
        cls,
        body: bytes,
        headers: Mapping[str, Any] | None,
        *,
        content_type: str | None = None,
        message_id: str | None = None,
    ) -> DeadLetter:
        h = dict(headers or {})
        envelope = _json_object(body) or {}
        failure = H.read_failure(h)
        event_id = failure.event_id or H.text(envelope.get("id"))
        deaths = _deaths(h)
        limit_death = next((d for d in deaths if d.get("reason") == "delivery_limit"), None)
        error_class = failure.error_class
        code = failure.code
        message = failure.message or ""
        first = failure.first_failure
        last = failure.last_failure
        attempts = failure.attempts
        if error_class is None and (
            limit_death is not None or h.get("x-first-death-reason") == "delivery_limit"
        ):
            # Dead-lettered by the broker itself (consumers kept dying on it): none of our
            # failure headers, unless it had been round the retry ladder before.
            death_time = H.timestamp((limit_death or {}).get("time"))
            before = f" Last failure before that: {code}: {message}" if code else ""
            error_class, code = "delivery_limit", "DELIVERY-LIMIT"
            message = (
                f"Delivered more than {DELIVERY_LIMIT} times without an outcome "
                f"(broker delivery limit).{before}"
            )
            first = first or death_time
            last = death_time or last
            attempts = failure.attempt
        routing_key = failure.routing_key or H.text(envelope.get("type"))
        if routing_key is None and limit_death is not None:
            keys = limit_death.get("routing-keys")
            routing_key = H.text(keys[0]) if isinstance(keys, list) and keys else None
        return cls(
            id=event_id or body_id(body),
            event_id=event_id,
            org=failure.org or H.text(envelope.get("organizationid")),
            type=failure.event_type or H.text(envelope.get("type")) or routing_key,
            subject=failure.subject or _subject(envelope),
            code=code or "UNKNOWN",
            error_class=error_class or "unknown",
            message=message,
            attempts=attempts,
            first_failure=first,
            last_failure=last,
            routing_key=routing_key,
            replay_id=failure.replay_id,
            body=body,
            headers=h,
            content_type=content_type,
            message_id=message_id,
        )

    @classmethod
    def from_incoming(cls, message: AbstractIncomingMessage) -> DeadLetter:
        return cls.from_message(
            message.body,
            message.headers,
            content_type=message.content_type,
            message_id=message.message_id,
        )

    def row(self) -> dict[str, Any]:
        """The list view: one flat JSON object, redacted."""
        row: dict[str, Any] = {
            "id": self.id,
            "event_id": self.event_id,
            "org": self.org,
            "type": self.type,
            "subject": self.subject,
            "code": self.code,
            "error_class": self.error_class,
            "message": self.message,
            "attempts": self.attempts,
            "first_failure": iso(self.first_failure),
            "last_failure": iso(self.last_failure),
            "replay_id": self.replay_id,
        }
        return dict(redacted(row))

    def history(self) -> list[dict[str, Any]]:
        return [dict(redacted(h)) for h in H.read_failure(self.headers).history]

    def detail(self, *, copies: int = 1) -> dict[str, Any]:
        """The ``show`` view: envelope, every header, history, what the code means. Redacted."""
        entry = info(self.code)
        envelope = _json_object(self.body)
        body_text = None
        if envelope is None:
            body_text = redact_text(self.body.decode("utf-8", "replace"))
        return {
            "id": self.id,
            "summary": self.row(),
            "error": {
                "code": self.code,
                "title": entry.title,
                "fix": entry.fix,
            },
            "history": self.history(),
            "properties": {"content_type": self.content_type, "message_id": self.message_id},
            "headers": redacted(self.headers),
            "envelope": redacted(envelope) if envelope is not None else None,
            "body": body_text,
            "copies": copies,
        }

    def archive_record(self, purge_id: str, at: str) -> dict[str, Any]:
        """What the purge archive keeps: enough to re-publish the message faithfully."""
        envelope = _json_object(self.body)
        record: dict[str, Any] = {
            "purge_id": purge_id,
            "purged_at": at,
            "id": self.id,
            "properties": {"content_type": self.content_type, "message_id": self.message_id},
            "headers": jsonable(self.headers),
            "envelope": envelope,
        }
        if envelope is None:
            try:
                record["body"] = self.body.decode("utf-8")
            except UnicodeDecodeError:
                record["body_hex"] = self.body.hex()
        return record

    def replay_headers(self, replay_id: str, at: str) -> dict[str, Any]:
        """Headers of the replayed copy: our failure headers and the broker's death records
        dropped (the attempt count starts again), the original routing key kept."""
        return H.replay_headers(
            self.headers, routing_key=self.routing_key, replay_id=replay_id, at=at
        )


# --- filters -------------------------------------------------------------------------------


def _glob(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    if value is None:
        return False
    if any(c in pattern for c in "*?["):
        return fnmatchcase(value, pattern)
    return value == pattern


@dataclass(frozen=True)
class Filters:
    """Which dead letters an operation concerns. Empty filters select everything.

    ``org``, ``type`` and ``code`` match exactly, or as a glob when they contain ``*?[``.
    ``since`` (inclusive) and ``until`` (exclusive) apply to the last failure time. ``ids``
    selects by :attr:`DeadLetter.id` / event id. ``limit`` keeps the first that many matches
    (in queue order).
    """

    org: str | None = None
    type: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[str] = frozenset()
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise FilterError("limit", "must be at least 1")
        if self.since and self.until and self.since >= self.until:
            raise FilterError("until", "must be later than since")

    @classmethod
    def parse(
        cls,
        *,
        org: str | None = None,
        type: str | None = None,
        code: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        ids: Iterable[str] | None = None,
        limit: int | str | None = None,
        now: datetime | None = None,
    ) -> Filters:
        """Build filters from user input (CLI, API); raises :class:`FilterError`."""
        times: dict[str, datetime | None] = {}
        for name, value in (("since", since), ("until", until)):
            if isinstance(value, datetime) or not value:
                times[name] = value if isinstance(value, datetime) else None
                continue
            try:
                times[name] = parse_time(value, now=now)
            except ValueError as exc:
                raise FilterError(name, str(exc)) from None
        count: int | None = None
        if limit is not None and limit != "":
            try:
                count = int(limit)
            except (TypeError, ValueError):
                raise FilterError("limit", f"must be a whole number, got {limit!r}") from None
        return cls(
            org=org or None,
            type=type or None,
            code=code or None,
            since=times["since"],
            until=times["until"],
            ids=frozenset(i for i in (ids or ()) if i),
            limit=count,
        )

    @classmethod
    def from_fields(
        cls,
        fields: Mapping[str, Any],
        *,
        ids: Iterable[str] | None = None,
        limit: int | str | None = None,
    ) -> Filters:
        """:meth:`parse` of user input keyed by filter name (CLI arguments, API query or body)."""
        return cls.parse(**{name: fields.get(name) for name in FILTER_FIELDS}, ids=ids, limit=limit)

    def matches(self, letter: DeadLetter) -> bool:
        if self.ids and letter.id not in self.ids and letter.event_id not in self.ids:
            return False
        if not (
            _glob(self.org, letter.org)
            and _glob(self.type, letter.type)
            and _glob(self.code, letter.code)
        ):
            return False
        if self.since or self.until:
            at = letter.last_failure
            if at is None:
                return False
            if self.since and at < self.since:
                return False
            if self.until and at >= self.until:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The filters that are set, as JSON (audit lines, API answers)."""
        out: dict[str, Any] = {}
        for name in ("org", "type", "code"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.since:
            out["since"] = iso(self.since)
        if self.until:
            out["until"] = iso(self.until)
        if self.ids:
            out["ids"] = sorted(self.ids)
        if self.limit is not None:
            out["limit"] = self.limit
        return out


def group_counts(letters: Iterable[DeadLetter], by: str) -> list[tuple[str, int]]:
    """Counts per code, organization or type; largest first."""
    if by not in GROUP_BY:
        raise FilterError("group_by", f"must be one of {', '.join(GROUP_BY)}")
    counts = Counter(getattr(letter, by) or "(none)" for letter in letters)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
