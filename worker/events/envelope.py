"""Parsing and building CloudEvents: bytes in, typed event out, and the reverse."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from worker.errors import InvalidEvent
from worker.events.models import ALL_TYPES, INCOMING, Envelope, Model

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "/bc-sync"
MAX_BODY_BYTES = 1_000_000  # a real Moment event is a few kB; more is not an event

D = TypeVar("D", bound=Model)


@dataclass(frozen=True)
class Delivery:
    """How this copy of the event reached the worker (set by the consumer from its headers)."""

    attempt: int = 1  # 1-based delivery attempt through the retry ladder
    replay_id: str | None = None  # set when ops (or the healer) replayed a dead letter
    healed: str | None = None  # why the healer replayed it, e.g. "the configuration was saved"


@dataclass(frozen=True)
class Event(Generic[D]):
    """A validated event: the envelope plus its typed data."""

    envelope: Envelope
    data: D
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def org(self) -> str:
        return self.envelope.organizationid


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(exc: ValidationError, prefix: str = "") -> str:
    """One line naming each bad field path, e.g. ``data.invoice.lines[0].quantity: ...``."""
    parts = []
    for err in exc.errors()[:10]:
        loc = _path(tuple(err["loc"]))
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 10
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse(body: bytes, *, routing_key: str | None = None) -> Event[Any]:
    """Validate a message body as one of our incoming event types, or raise ``InvalidEvent``."""
    if not body:
        raise InvalidEvent("empty message body")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidEvent(f"message body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("body is not a JSON object (a CloudEvent)")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(f"not a valid CloudEvent: {describe(exc)}") from None
    model = INCOMING.get(envelope.type)
    if model is None:
        raise InvalidEvent(f"unknown event type {envelope.type!r}", code="EVENT-UNKNOWN-TYPE")
    if routing_key is not None and routing_key != envelope.type:
        raise InvalidEvent(f"routing key {routing_key!r} does not match type {envelope.type!r}")
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEvent(describe(exc, "data")) from None
    return Event(envelope, data)


def build(
    type_: str,
    org: str,
    data: BaseModel | dict[str, Any],
    *,
    id_: str | None = None,
    source: str = SOURCE,
    time: datetime | None = None,
) -> bytes:
    """Serialize an event of a known type, validating its data against the contract."""
    model = ALL_TYPES[type_]
    payload = data if isinstance(data, model) else model.model_validate(data)
    envelope = {
        "specversion": "1.0",
        "id": id_ or str(uuid.uuid4()),
        "source": source,
        "type": type_,
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "organizationid": org,
        "datacontenttype": "application/json",
        "data": payload.model_dump(mode="json"),
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
