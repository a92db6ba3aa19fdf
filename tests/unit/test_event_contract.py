"""The published event contract holds up against third-party tools: every event type has an
example in schemas/examples/ that its JSON Schema accepts, the official CloudEvents SDK parses
and the worker reads; and the envelope rules are as strict as CloudEvents 1.0 on both sides
(the schema never accepts an envelope the worker or the SDK refuses)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.support import factories as f
from worker.errors import InvalidEvent
from worker.events import schemas
from worker.events.envelope import CloudEvent, parse
from worker.events.models import ALL_TYPES, INCOMING

EXAMPLES = schemas.SCHEMA_DIR / "examples"


def validator(type_: str) -> Draft202012Validator:
    schema = json.loads((schemas.SCHEMA_DIR / f"{type_}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def example(type_: str) -> dict[str, Any]:
    path = EXAMPLES / f"{type_}.json"
    if not path.is_file():
        where = path.relative_to(schemas.SCHEMA_DIR.parent)
        pytest.fail(
            f"no example event for type {type_!r}: add {where} (one CloudEvent of that type,"
            " as the worker would send or receive it)"
        )
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def sdk_read(body: bytes) -> Any:
    """The official CloudEvents SDK (PyPI `cloudevents`), structured JSON format."""
    from cloudevents.core.formats.json import JSONFormat

    return JSONFormat().read(None, body)


def worker_reads(envelope: dict[str, Any]) -> None:
    """What the worker does with a body of this type: raises InvalidEvent when it refuses."""
    body = json.dumps(envelope).encode()
    if envelope.get("type") in INCOMING:
        parse(body, routing_key=envelope["type"])
        return
    try:
        model = CloudEvent.model_validate(envelope)
        ALL_TYPES[model.type].model_validate(model.data)
    except ValueError as exc:  # pydantic's ValidationError
        raise InvalidEvent(str(exc)) from None


# --- examples ------------------------------------------------------------------------------


def test_examples_are_only_of_known_types() -> None:
    stale = {p.stem for p in EXAMPLES.glob("*.json")} - set(ALL_TYPES)
    assert not stale, f"examples of types the contract does not have: {sorted(stale)}"


@pytest.mark.parametrize("type_", sorted(ALL_TYPES))
def test_the_example_of_each_type_passes_schema_sdk_and_worker(type_: str) -> None:
    event = example(type_)
    assert event["type"] == type_
    errors = [e.message for e in validator(type_).iter_errors(event)]
    assert not errors, errors
    parsed = sdk_read(json.dumps(event).encode())
    assert (parsed.get_type(), parsed.get_id()) == (type_, event["id"])
    assert parsed.get_extension("organizationid") == event["organizationid"]
    assert parsed.get_data() == event["data"]
    worker_reads(event)


def test_an_example_can_fail_the_schema() -> None:
    """The example check is not vacuous: a broken example is reported with its field."""
    event = example("moment.invoice.created")
    del event["data"]["invoice"]["customer"]
    errors = [e.message for e in validator("moment.invoice.created").iter_errors(event)]
    assert any("'customer' is a required property" in e for e in errors), errors


# --- envelope strictness: schema, worker and SDK agree -------------------------------------

# (attribute change, does the SDK refuse it too?)
BAD_ENVELOPES: dict[str, tuple[dict[str, Any], bool]] = {
    "time null": ({"time": None}, True),
    "time without zone": ({"time": "2026-11-25T10:00:00"}, True),
    "time as a number": ({"time": 1764064800}, True),
    "time not a timestamp": ({"time": "yesterday"}, True),
    "extension with capitals": ({"traceParent": "00-abc"}, True),
    "extension with underscore": ({"trace_parent": "00-abc"}, True),
    "extension with dash": ({"trace-parent": "00-abc"}, True),
    "extension name of 21 characters": ({"a" * 21: "x"}, False),
    "extension value null": ({"traceparent": None}, False),
    "extension value an object": ({"partner": {"id": 1}}, False),
    "extension value a list": ({"partner": [1, 2]}, False),
    "extension value a fraction": ({"weight": 1.5}, False),
    "extension value beyond 32 bits": ({"seq": 2**31}, False),
    "empty datacontenttype": ({"datacontenttype": ""}, True),
    "datacontenttype null": ({"datacontenttype": None}, True),
    "datacontenttype not a media type": ({"datacontenttype": "json"}, False),
    "empty source": ({"source": ""}, True),
    "source with a space": ({"source": "/moment/org acme"}, False),
    "source with non-ASCII": ({"source": "/moment/företag"}, False),
    "source with a bad percent escape": ({"source": "/moment/%zz"}, False),
    "source relative with a colon first": ({"source": "1moment:x"}, False),
    "empty subject": ({"subject": ""}, True),
    "subject null": ({"subject": None}, False),
    "dataschema relative": ({"dataschema": "schemas/x.json"}, False),
    "empty dataschema": ({"dataschema": ""}, True),
    "data_base64 instead of data": ({"data_base64": "e30="}, False),
    "empty id": ({"id": ""}, True),
    "specversion 0.3": ({"specversion": "0.3"}, False),  # the SDK reads 0.3 events
}


def envelope(**changes: Any) -> dict[str, Any]:
    env = f.envelope("moment.customer.created", {"customer": f.customer()})
    env.update(changes)
    return env


@pytest.mark.parametrize("name", list(BAD_ENVELOPES))
def test_a_bad_envelope_is_refused_by_schema_and_worker(name: str) -> None:
    changes, sdk_refuses = BAD_ENVELOPES[name]
    env = envelope(**copy.deepcopy(changes))
    assert list(validator("moment.customer.created").iter_errors(env)), "schema accepted it"
    with pytest.raises(InvalidEvent) as err:
        worker_reads(env)
    assert err.value.code == "EVENT-INVALID"
    attribute = next(iter(changes))
    assert attribute in err.value.message, err.value.message  # names what is wrong
    if sdk_refuses:
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises several unrelated types
            sdk_read(json.dumps(env).encode())


GOOD_ENVELOPES: dict[str, dict[str, Any]] = {
    "no time": {},
    "time with offset and fraction": {"time": "2026-11-25T11:00:00.123456+01:00"},
    "absolute URI source": {"source": "https://app.moment.se/organizations/org-acme"},
    "URN source": {"source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
    "percent-encoded source": {"source": "/moment/f%C3%B6retag"},
    "extensions of every type": {"traceparent": "00-4bf9-00f0-01", "retries": 3, "test": True},
    "extension of 20 characters": {"a" * 20: "x"},
    "subject and dataschema": {
        "subject": "invoice/1864",
        "dataschema": "https://moment.se/schemas/bc-sync/moment.customer.created.json",
    },
    "json content type with parameter": {"datacontenttype": "application/json; charset=utf-8"},
}


@pytest.mark.parametrize("name", list(GOOD_ENVELOPES))
def test_a_valid_envelope_is_accepted_by_schema_sdk_and_worker(name: str) -> None:
    env = envelope(**GOOD_ENVELOPES[name])
    if name == "no time":
        del env["time"]
    assert not [e.message for e in validator("moment.customer.created").iter_errors(env)]
    worker_reads(env)
    sdk_read(json.dumps(env).encode())


_uri_chars = st.sampled_from([*"aZ09/:?#[]@!$&'()*+,;=%-._~ é\"<>\\^`{|}", "%20", "%C3"])
_names = st.text(alphabet="abcXYZ019_-.", min_size=0, max_size=24)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**33), max_value=2**33),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
_times = st.one_of(
    st.datetimes(timezones=st.none()).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.none()).map(lambda d: d.isoformat() + "Z"),
    st.datetimes(timezones=st.none()).map(lambda d: d.isoformat() + "+02:00"),
    st.none(),
    st.integers(),
    st.text(max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    source=st.lists(_uri_chars, max_size=8).map("".join),
    time=_times,
    extensions=st.dictionaries(_names, _values, max_size=3),
    content_type=st.one_of(st.sampled_from(["application/json", "", "text/plain", "x"])),
)
def test_schema_and_worker_agree_on_any_envelope(
    source: str, time: Any, extensions: dict[str, Any], content_type: str
) -> None:
    """Property: for envelopes varied in source, time, extensions and content type, the
    published schema and the worker accept and refuse exactly the same ones."""
    env = envelope(source=source, time=time, datacontenttype=content_type)
    env.update(extensions)
    schema_ok = not list(validator("moment.customer.created").iter_errors(env))
    try:
        worker_reads(env)
        worker_ok = True
    except InvalidEvent:
        worker_ok = False
    assert schema_ok == worker_ok, (env, schema_ok, worker_ok)


def test_built_events_pass_the_schema_and_the_sdk() -> None:
    """What the worker publishes (envelope.build) is a valid CloudEvent of its schema."""
    from worker.events.envelope import build

    data = example("bc.invoice.exported")["data"]
    body = build("bc.invoice.exported", f.ORG, data)
    env = json.loads(body)
    assert not [e.message for e in validator("bc.invoice.exported").iter_errors(env)]
    assert sdk_read(body).get_source() == "/bc-sync"
