"""The event contract: valid events parse, bad ones name the field, schemas never drift."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import factories as f
from worker.errors import InvalidEvent
from worker.events import schemas
from worker.events.envelope import build, parse
from worker.events.models import ALL_TYPES, INCOMING, Invoice

# The checked-in generated files are what the LOCKED versions generate (make schemas); on the
# lowest allowed versions (make test-lowest) pydantic renders the same schemas differently
# (e.g. `enum` beside `const`), so the drift check only means something on the lock.
LOCKED_TOOLCHAIN_ONLY = pytest.mark.skipif(
    os.environ.get("BC_SYNC_TEST_LOWEST") == "1",
    reason="generated files are compared on the locked versions only (make test-lowest)",
)


def test_every_incoming_type_parses_from_the_design_example() -> None:
    samples = {
        "moment.customer.created": {"customer": f.customer()},
        "moment.customer.updated": {"customer": f.customer()},
        "moment.project.created": {"project": f.project()},
        "moment.project.updated": {"project": f.project()},
        "moment.invoice.created": {"invoice": f.invoice()},
    }
    assert set(samples) == set(INCOMING)
    for type_, data in samples.items():
        event = parse(f.body(type_, data), routing_key=type_)
        assert event.type == type_
        assert event.org == f.ORG


def test_unknown_extra_fields_are_accepted() -> None:
    env = f.envelope("moment.invoice.created", {"invoice": f.invoice()})
    env["traceparent"] = "00-abc"
    env["data"]["invoice"]["new_field_from_the_future"] = {"x": 1}
    env["data"]["invoice"]["lines"][0]["another"] = True
    event = parse(json.dumps(env).encode())
    assert isinstance(event.data.invoice, Invoice)
    assert event.data.invoice.number == "1864"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda e: e["data"]["invoice"].pop("customer"), "data.invoice.customer"),
        (
            lambda e: e["data"]["invoice"]["lines"][0].update(quantity="ten"),
            "data.invoice.lines[0].quantity",
        ),
        (
            lambda e: e["data"]["invoice"].update(invoice_date="2026-02-30"),
            "data.invoice.invoice_date",
        ),
        (lambda e: e["data"]["invoice"].update(lines=[]), "data.invoice.lines"),
        (
            lambda e: e["data"]["invoice"]["customer"]["invoice_address"].update(
                country_code="Sweden"
            ),
            "data.invoice.customer.invoice_address.country_code",
        ),
        (lambda e: e.pop("organizationid"), "organizationid"),
        (lambda e: e.update(specversion="0.3"), "specversion"),
    ],
)
def test_missing_or_wrong_fields_name_the_path(mutate: object, path: str) -> None:
    env = f.envelope("moment.invoice.created", {"invoice": f.invoice()})
    mutate(env)  # type: ignore[operator]
    with pytest.raises(InvalidEvent) as err:
        parse(json.dumps(env).encode())
    assert path in err.value.message
    assert err.value.code == "EVENT-INVALID"


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinite_amounts_are_invalid(amount: str) -> None:
    text = f.body("moment.invoice.created", {"invoice": f.invoice()}).decode()
    text = text.replace('"unit_price": 1200.0', f'"unit_price": {amount}')
    with pytest.raises(InvalidEvent, match=r"lines\[0\]\.unit_price"):
        parse(text.encode())


@pytest.mark.parametrize(
    "body", [b"", b"[]", b"null", b"\xff\xfe", b'{"specversion": "1.0"}', b"x" * 2_000_000]
)
def test_garbage_is_invalid_not_a_crash(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse(body)


def test_routing_key_must_match_type() -> None:
    with pytest.raises(InvalidEvent, match="routing key"):
        parse(f.customer_event(), routing_key="moment.customer.updated")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(body: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        parse(body)


def test_build_round_trips_outgoing_events() -> None:
    body = build(
        "bc.invoice.exported",
        f.ORG,
        {
            "object_type": "invoice",
            "moment_id": "i-1",
            "moment_number": "1864",
            "bc_id": "0d5f...",
            "bc_number": "103001",
            "status": "Open",
        },
        id_="fixed",
    )
    env = json.loads(body)
    assert env["specversion"] == "1.0" and env["id"] == "fixed"
    assert env["type"] == "bc.invoice.exported" and env["organizationid"] == f.ORG
    assert env["data"]["bc_number"] == "103001"


@LOCKED_TOOLCHAIN_ONLY
def test_checked_in_schemas_match_the_models() -> None:
    """`make schemas` output is committed; editing a model without regenerating fails here."""
    assert schemas.drift() == [], "run `make schemas` and commit schemas/"


def test_schema_files_cover_every_type_and_asyncapi() -> None:
    names = {p.name for p in schemas.SCHEMA_DIR.glob("*.json")}
    # openapi.json is the admin API's (tests/unit/test_openapi.py), beside the event schemas.
    assert names == {f"{t}.json" for t in ALL_TYPES} | {"asyncapi.json"} | schemas.NOT_OURS
    doc = json.loads((schemas.SCHEMA_DIR / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert {c["address"] for c in doc["channels"].values()} == set(ALL_TYPES)
