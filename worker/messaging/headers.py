"""The AMQP headers bc-sync sets, and the dead-letter header format in one place.

The consumer writes them (:func:`retry_headers`, :func:`dead_letter_headers`); the dead-letter
tools read them (:func:`read_failure`) and reset them for a replay (:func:`replay_headers`).
``tests/unit/test_dead_letter_headers.py`` holds the two directions to each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.log import redact_text

ATTEMPT = "x-bc-attempt"  # 1-based delivery attempt of this event through the ladder
ROUTING_KEY = "x-bc-routing-key"  # the original routing key (= event type)
FIRST_FAILURE = "x-bc-first-failure"  # ISO time of the first failure
LAST_FAILURE = "x-bc-last-failure"
ERROR_CODE = "x-bc-error-code"  # stable code from worker.errors.CATALOGUE
ERROR_MESSAGE = "x-bc-error-message"
ERROR_CLASS = "x-bc-error-class"  # invalid | permanent | attempts_exhausted | delivery_limit
ATTEMPTS = "x-bc-attempts"  # attempts used when dead-lettered
BC_STATUS = "x-bc-last-bc-status"
BC_CODE = "x-bc-last-bc-code"
ORG = "x-bc-org"
EVENT_ID = "x-bc-event-id"
EVENT_TYPE = "x-bc-event-type"
SUBJECT = "x-bc-subject"  # the Moment object, e.g. "invoice 1864"
HISTORY = "x-bc-history"  # list of {at, code, class, message, attempt}: every failure so far
REPLAY_ID = "x-bc-replay-id"
REPLAYED_AT = "x-bc-replayed-at"
# Set on a dead letter moved to the archive queue (the console's Archive), removed when it is
# brought back; a replay drops them like every x-bc- header.
ARCHIVED_AT = "x-bc-archived-at"
ARCHIVED_BY = "x-bc-archived-by"
ARCHIVE_REASON = "x-bc-archive-reason"
ARCHIVE_HEADERS = (ARCHIVED_AT, ARCHIVED_BY, ARCHIVE_REASON)
# Self-healing (worker.ops.heal): what the failure needs in BC, and the healer's marks.
MISSING = "x-bc-missing"  # list of {kind, value[, dimension]}: records BC said are missing
HEALED = "x-bc-healed"  # why the healer replayed this message (kept through later failures)
HEALED_AT = "x-bc-healed-at"  # ISO time of that replay
HEAL_COUNT = "x-bc-heal-count"  # automatic replays so far
# Times the consumer parked this message because its organization held its share of the
# prefetch (worker.messaging.consumer): a wait, never an attempt.
PARKED = "x-bc-parked"
RECOVERED = "x-bc-recovered"  # times the retry watch published it again (lost on the ladder)

# Every header we own starts with this prefix; a replay strips them to reset the history.
PREFIX = "x-bc-"

# Headers the broker sets; a replayed copy starts without them.
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)

MAX_HEADER_TEXT = 1000
MAX_HEADER_LABEL = 200
MAX_HISTORY = 20  # failures kept in x-bc-history


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with milliseconds and ``Z``: how failure times are written."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC)) or ""


def short(text: str) -> str:
    """A message as a header carries it: redacted and bounded."""
    text = redact_text(text)
    return text if len(text) <= MAX_HEADER_TEXT else text[: MAX_HEADER_TEXT - 1] + "…"


def label(value: object) -> str:
    """An id-like header from an untrusted body: a bounded string, whatever the body held.

    An unbounded one could outgrow an AMQP frame; the broker then closes the connection and
    every in-flight message loops."""
    text = "" if value is None else value if isinstance(value, str) else repr(value)
    return short(text)[:MAX_HEADER_LABEL]


def _history(
    hdrs: Mapping[str, Any], now: str, code: str, message: str, error_class: str, attempt: int
) -> list[dict[str, Any]]:
    """The failure history carried in the headers, with this failure appended (bounded)."""
    previous = hdrs.get(HISTORY)
    history = [h for h in previous if isinstance(h, dict)] if isinstance(previous, list) else []
    history.append(
        {
            "at": now,
            "code": code,
            "class": error_class,
            "message": short(message)[:300],
            "attempt": attempt,
        }
    )
    return history[-MAX_HISTORY:]


def retry_headers(
    hdrs: Mapping[str, Any],
    *,
    routing_key: str,
    attempt: int,
    code: str,
    message: str,
    now: str | None = None,
) -> dict[str, Any]:
    """Headers of the copy that goes to a retry queue after failed attempt ``attempt``."""
    now = now or now_iso()
    return {
        **hdrs,
        ATTEMPT: attempt + 1,
        ROUTING_KEY: routing_key,
        FIRST_FAILURE: hdrs.get(FIRST_FAILURE, now),
        LAST_FAILURE: now,
        ERROR_CODE: code,
        ERROR_MESSAGE: short(message),
        HISTORY: _history(hdrs, now, code, message, "transient", attempt),
    }


def dead_letter_headers(
    hdrs: Mapping[str, Any],
    *,
    routing_key: str,
    code: str,
    message: str,
    error_class: str,
    attempts: int,
    org: object,
    event_id: object,
    event_type: object,
    subject: object,
    bc_status: int | None = None,
    bc_code: str | None = None,
    missing: Sequence[Mapping[str, str]] = (),
    now: str | None = None,
) -> dict[str, Any]:
    """Headers of the copy that goes to the dead-letter queue (see README: dead letters)."""
    now = now or now_iso()
    new: dict[str, Any] = {
        **hdrs,
        ROUTING_KEY: routing_key,
        ERROR_CODE: code,
        ERROR_MESSAGE: short(message),
        ERROR_CLASS: error_class,
        ATTEMPTS: attempts,
        FIRST_FAILURE: hdrs.get(FIRST_FAILURE, now),
        LAST_FAILURE: now,
        ORG: label(org),
        EVENT_ID: label(event_id),
        EVENT_TYPE: label(event_type),
        SUBJECT: label(subject),
        HISTORY: _history(hdrs, now, code, message, error_class, attempts),
    }
    new.pop(ATTEMPT, None)
    new.pop(MISSING, None)  # a healed message failing again: only today's facts
    if missing:
        new[MISSING] = [{str(k)[:40]: label(v) for k, v in fact.items()} for fact in missing[:20]]
    if bc_status is not None:
        new[BC_STATUS] = bc_status
    if bc_code:
        new[BC_CODE] = bc_code
    return new


def text(value: Any) -> str | None:
    """A header value as text (None when absent, empty or not text-like)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str | int) and not isinstance(value, bool):
        out = str(value)
        return out or None
    return None


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def timestamp(value: Any) -> datetime | None:
    """A header time (ISO text, or an AMQP timestamp) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value:
        with suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class FailureHeaders:
    """What our headers say about a failed message (``None`` where a header is absent)."""

    code: str | None
    message: str | None
    error_class: str | None
    attempt: int | None  # the ladder's next attempt (retry copies)
    attempts: int | None  # attempts used (dead letters)
    first_failure: datetime | None
    last_failure: datetime | None
    routing_key: str | None
    org: str | None
    event_id: str | None
    event_type: str | None
    subject: str | None
    bc_status: int | None
    bc_code: str | None
    replay_id: str | None
    history: tuple[dict[str, Any], ...]


def read_failure(headers: Mapping[str, Any] | None) -> FailureHeaders:
    """The reading side of :func:`retry_headers` / :func:`dead_letter_headers`."""
    h = headers or {}
    raw = h.get(HISTORY)
    history = tuple(x for x in raw if isinstance(x, dict)) if isinstance(raw, list) else ()
    return FailureHeaders(
        code=text(h.get(ERROR_CODE)),
        message=text(h.get(ERROR_MESSAGE)),
        error_class=text(h.get(ERROR_CLASS)),
        attempt=integer(h.get(ATTEMPT)),
        attempts=integer(h.get(ATTEMPTS)),
        first_failure=timestamp(h.get(FIRST_FAILURE)),
        last_failure=timestamp(h.get(LAST_FAILURE)),
        routing_key=text(h.get(ROUTING_KEY)),
        org=text(h.get(ORG)),
        event_id=text(h.get(EVENT_ID)),
        event_type=text(h.get(EVENT_TYPE)),
        subject=text(h.get(SUBJECT)),
        bc_status=integer(h.get(BC_STATUS)),
        bc_code=text(h.get(BC_CODE)),
        replay_id=text(h.get(REPLAY_ID)),
        history=history,
    )


def replay_headers(
    headers: Mapping[str, Any], *, routing_key: str | None, replay_id: str, at: str
) -> dict[str, Any]:
    """Headers of a replayed copy: our failure headers and the broker's death records dropped
    (the attempt count starts again), the original routing key kept."""
    out = {k: v for k, v in headers.items() if not k.startswith(PREFIX) and k not in BROKER_HEADERS}
    if routing_key:
        out[ROUTING_KEY] = routing_key
    out[REPLAY_ID] = replay_id
    out[REPLAYED_AT] = at
    return out


def archive_headers(headers: Mapping[str, Any], *, by: str, reason: str, at: str) -> dict[str, Any]:
    """Headers of a dead letter moved to the archive queue: all of its own, plus who archived
    it, when and why (the broker's death records stay: they are part of its history)."""
    return {**headers, ARCHIVED_AT: at, ARCHIVED_BY: label(by), ARCHIVE_REASON: short(reason)}


def restore_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers of an archived dead letter brought back to the dead-letter queue."""
    return {k: v for k, v in headers.items() if k not in ARCHIVE_HEADERS}


@dataclass(frozen=True)
class ArchiveHeaders:
    at: datetime | None
    by: str | None
    reason: str | None


def read_archive(headers: Mapping[str, Any] | None) -> ArchiveHeaders:
    h = headers or {}
    return ArchiveHeaders(
        timestamp(h.get(ARCHIVED_AT)), text(h.get(ARCHIVED_BY)), text(h.get(ARCHIVE_REASON))
    )
