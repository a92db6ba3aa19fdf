"""Parsing and building CloudEvents: bytes in, typed event out, and the reverse."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from worker import codec, tracing
from worker.errors import InvalidEvent
from worker.events.models import ALL_TYPES, INCOMING, KEY_MAX, ORG_ID_MAX, Envelope, Model

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "/bc-sync"
MAX_BODY_BYTES = 1_000_000  # a real Moment event is a few kB; more is not an event

D = TypeVar("D", bound=Model)

# --- CloudEvents 1.0 rules (spec.md v1.0.2 and the JSON format) -------------------------------
# Each rule is written once here and used twice: by CloudEvent (what the worker accepts) and by
# envelope_json_schema() (what schemas/ publishes), so the schema never accepts an envelope the
# worker or the CloudEvents SDK rejects. Python `re` and JSON Schema (ECMA-262, `u` flag) read
# these patterns alike: no escapes inside character classes, no look-arounds, no \d or \w.

# RFC 3986 URI / URI-reference, without IP-literal details (any [hex:.v] inside brackets).
_PCT = "%[0-9A-Fa-f]{2}"
_PCHAR = f"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|{_PCT})"
_PCHAR_NC = f"(?:[A-Za-z0-9._~!$&'()*+,;=@-]|{_PCT})"  # first segment of a relative path
_AUTHORITY = (
    f"(?:(?:[A-Za-z0-9._~!$&'()*+,;=:-]|{_PCT})*@)?"
    rf"(?:\[[0-9A-Fa-fVv:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|{_PCT})*)"
    "(?::[0-9]*)?"
)
_TAIL = f"(?:[?](?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
_HIER = f"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"
_RELATIVE = (
    f"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?|{_PCHAR_NC}+(?:/{_PCHAR}*)*|)"
)
_SCHEME = "[A-Za-z][A-Za-z0-9+.-]*:"
URI = f"^{_SCHEME}{_HIER}{_TAIL}$"
URI_REFERENCE = f"^(?:{_SCHEME}{_HIER}|{_RELATIVE}){_TAIL}$"
# RFC 3339 date-time: a time zone is required (the SDK refuses naive times).
RFC3339 = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    "([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# RFC 2046 media type: type "/" subtype, optional parameters.
MEDIA_TYPE = "^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*( *;.*)?$"
# Attribute names: lower-case a-z and 0-9 only (MUST); at most 20 characters (SHOULD, held
# as a MUST here). `data_base64` fails it too: our events carry JSON `data`.
ATTRIBUTE_NAME = "^[a-z0-9]{1,20}$"
INT32 = (-(2**31), 2**31 - 1)  # the CloudEvents Integer type

_URI = re.compile(URI)
_URI_REFERENCE = re.compile(URI_REFERENCE)
_RFC3339 = re.compile(RFC3339)
_MEDIA_TYPE = re.compile(MEDIA_TYPE)
_ATTRIBUTE_NAME = re.compile(ATTRIBUTE_NAME)


def _matches(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _extension_value_ok(value: Any) -> bool:
    """CloudEvents types in JSON: String (also URI, Timestamp, Binary), Boolean, Integer."""
    if isinstance(value, str | bool):
        return True
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return isinstance(value, int) and INT32[0] <= value <= INT32[1]


class CloudEvent(Envelope):
    """The envelope held to the CloudEvents 1.0 spec, as strict as its JSON Schema below.

    On top of :class:`Envelope`: ``source`` is a URI-reference, ``time`` an RFC 3339 string
    with a zone, ``datacontenttype`` a media type, ``dataschema`` a URI, ``subject``
    non-empty, none of the optional attributes null, every member name lower-case a-z0-9 (at
    most 20 characters), every extension value a string, boolean or 32-bit integer.
    """

    source: Annotated[
        str, StringConstraints(min_length=1), _matches(_URI_REFERENCE, "a URI-reference (RFC 3986)")
    ]
    datacontenttype: Annotated[
        str, _matches(_MEDIA_TYPE, "a media type, e.g. application/json")
    ] = "application/json"
    dataschema: Annotated[str, _matches(_URI, "an absolute URI")] | None = None
    subject: Annotated[str, _matches(re.compile(".+", re.S), "a non-empty string")] | None = None

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # Before pydantic's own parsing, which would also take numbers and naive times.
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise ValueError(
                "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-25T10:00:00Z"
            )
        return value

    @model_validator(mode="after")
    def _members(self) -> CloudEvent:
        # After the fields: a missing or wrong required attribute is reported first.
        for name in ("dataschema", "subject"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name}: must not be null (leave the attribute out instead)")
        for name, value in (self.model_extra or {}).items():
            if not _ATTRIBUTE_NAME.fullmatch(name):
                raise ValueError(
                    f"attribute name {name!r}: CloudEvents attribute names are 1 to 20 "
                    "lower-case letters a-z or digits"
                )
            if not _extension_value_ok(value):
                raise ValueError(
                    f"extension attribute {name!r}: the value must be a string, a boolean or "
                    "a 32-bit integer"
                )
        return self


def envelope_json_schema() -> dict[str, Any]:
    """The envelope part of every event's JSON Schema: the rules of :class:`CloudEvent`."""

    def text(pattern: str | None = None, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "minLength": 1, **extra}
        if pattern is not None:
            out["pattern"] = pattern
        return out

    properties = {
        "specversion": {"const": "1.0", "type": "string"},
        "id": text(maxLength=KEY_MAX, description="Unique per source; the idempotency key."),
        "source": text(URI_REFERENCE, format="uri-reference"),
        "type": text(),
        "time": text(RFC3339, format="date-time"),
        "datacontenttype": text(MEDIA_TYPE, default="application/json"),
        "dataschema": text(URI, format="uri"),
        "subject": text(),
        "organizationid": text(
            r"^[^\x00-\x1f\x7f-\x9f]+$",
            maxLength=ORG_ID_MAX,
            description="Extension: the Moment organization the event belongs to.",
        ),
        "sequence": {
            "type": ["string", "integer"],
            "pattern": "^[0-9]{1,30}$",
            "minimum": 0,
            "description": "Optional extension: order of this object's changes when their time "
            "is equal (1-30 digits, compared as an integer; a JSON integer is accepted too). "
            "Newest change wins: time, then sequence, then id (as a string).",
        },
    }
    return {
        "properties": properties,
        "required": ["specversion", "id", "source", "type", "organizationid", "data"],
        "propertyNames": {"pattern": ATTRIBUTE_NAME},
        # Extension attributes: any other member, with a CloudEvents-typed value.
        "additionalProperties": {
            "anyOf": [
                {"type": "string"},
                {"type": "boolean"},
                {"type": "integer", "minimum": INT32[0], "maximum": INT32[1]},
            ]
        },
    }


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

    def trace_parent(self) -> tracing.Context | None:
        """The trace context the sender put in the event (CloudEvents distributed tracing)."""
        return tracing.extract(self.envelope.traceparent, self.envelope.tracestate)


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
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    more = len(exc.errors()) - 10
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse(body: bytes, *, routing_key: str | None = None) -> Event[Any]:
    """Validate a message body as one of our incoming event types, or raise ``InvalidEvent``."""
    if not body:
        raise InvalidEvent("empty message body")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidEvent(f"message body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        raw = codec.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("body is not a JSON object (a CloudEvent)")
    try:
        envelope = CloudEvent.model_validate(raw)
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
    """Serialize an event of a known type, validating its data against the contract.

    The current trace context goes along as ``traceparent`` / ``tracestate`` (CloudEvents
    distributed tracing): the consume span of the event being handled, the poll span, or the
    incoming event's own context when tracing is off here."""
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
        **tracing.trace_context(),
        "data": payload.model_dump(mode="json"),
    }
    return codec.dumps(envelope)
