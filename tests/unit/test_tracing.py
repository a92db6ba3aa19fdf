"""worker.tracing and the CloudEvents distributed-tracing extension of the envelope: when
tracing is on and when it is off, what an event may carry, what build() writes, log lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import factories as f
from worker import tracing
from worker.errors import InvalidEvent
from worker.events import schemas
from worker.events.envelope import build, parse
from worker.events.models import ExportedData
from worker.log import add_trace_ids

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"
CREATED = "moment.customer.created"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use(exporter, batch=False)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def event(**extensions: Any) -> bytes:
    envelope = f.envelope(CREATED, {"customer": f.customer("10001")})
    envelope.update(extensions)
    return json.dumps(envelope).encode()


def exported_data() -> ExportedData:
    return ExportedData.model_validate(
        {
            "object_type": "customer",
            "moment_id": "c-1",
            "moment_number": "10001",
            "bc_id": "b-1",
            "bc_number": "10001",
        }
    )


def test_an_event_carries_its_trace_context() -> None:
    parsed = parse(event(traceparent=TRACEPARENT, tracestate="moment=1"))
    assert parsed.envelope.traceparent == TRACEPARENT
    ctx = parsed.trace_parent()
    assert ctx is not None
    remote = trace.get_current_span(ctx).get_span_context()
    assert remote.is_remote and format(remote.trace_id, "032x") == TRACE_ID
    assert remote.trace_state.get("moment") == "1"


@pytest.mark.parametrize("bad", ["", "garbage", "00-" + "0" * 32 + "-" + PARENT + "-01"])
def test_a_malformed_traceparent_is_ignored_not_refused(bad: str) -> None:
    """W3C Trace Context: an invalid traceparent starts a new trace; the event is still good
    (a tracing header never sends Moment's invoice to the dead letters)."""
    parsed = parse(event(traceparent=bad))
    assert parsed.trace_parent() is None


@pytest.mark.parametrize(
    "extensions", [{"traceparent": None}, {"tracestate": None}, {"traceparent": 7}]
)
def test_null_or_non_text_trace_attributes_are_invalid_events(extensions: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent, match="trace"):
        parse(event(**extensions))


def test_the_event_schemas_describe_the_trace_attributes() -> None:
    schema = schemas.event_schema(CREATED)
    assert schema["properties"]["traceparent"]["type"] == "string"
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(json.loads(event(traceparent=TRACEPARENT, tracestate="a=b")))
    assert not validator.is_valid(json.loads(event(traceparent=None)))


def test_build_writes_the_current_trace_context(spans: InMemorySpanExporter) -> None:
    plain = json.loads(build("bc.customer.exported", f.ORG, exported_data()))
    assert "traceparent" not in plain and "tracestate" not in plain
    with tracing.span("consume x") as current:
        inside = json.loads(build("bc.customer.exported", f.ORG, exported_data()))
    ctx = current.get_span_context()
    version, trace_id, parent_id, flags = inside["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    # And what build() wrote is a valid event of the published contract.
    jsonschema.Draft202012Validator(schemas.event_schema("bc.customer.exported")).validate(inside)


def test_off_no_spans_yet_an_incoming_context_passes_through() -> None:
    assert not tracing.enabled()
    with tracing.span("consume x") as none:
        assert not none.is_recording()
        assert not trace.get_current_span().get_span_context().is_valid
        assert tracing.trace_context() == {}
    parent = tracing.extract(TRACEPARENT, "moment=1")
    with tracing.span("consume x", parent=parent):
        assert tracing.trace_context() == {"traceparent": TRACEPARENT, "tracestate": "moment=1"}
    assert tracing.trace_context() == {}


def test_on_spans_continue_the_parent_and_errors_keep_their_reason(
    spans: InMemorySpanExporter,
) -> None:
    parent = tracing.extract(TRACEPARENT)
    with (
        pytest.raises(RuntimeError),
        tracing.span("consume x", parent=parent, attributes={"a": 1}) as outer,
    ):
        with tracing.span("GET customers", kind=tracing.SpanKind.CLIENT) as inner:
            tracing.fail(inner, "503")
        raise RuntimeError("text that may quote input")
    assert outer.is_recording() is False  # ended
    finished = {s.name: s for s in spans.get_finished_spans()}
    root, child = finished["consume x"], finished["GET customers"]
    assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT
    assert child.parent is not None and root.context is not None
    assert child.parent.span_id == root.context.span_id
    assert child.status.description == "503"
    assert root.status.description == "RuntimeError"  # the type, never the message
    assert "quote input" not in repr(root.events)


def test_log_lines_carry_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with tracing.span("consume x") as current:
        line = add_trace_ids(None, "info", {"event": "x"})
    ctx = current.get_span_context()
    assert line == {
        "event": "x",
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
    }


def test_configure_only_with_an_otlp_endpoint() -> None:
    assert tracing.configure({}) is None and not tracing.enabled()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracing.configure({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    with pytest.raises(ValueError, match="http/protobuf"):
        tracing.configure({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert not tracing.enabled()
    provider = tracing.configure(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}
    )
    try:
        assert provider is not None and tracing.enabled()
    finally:
        tracing.shutdown()
    assert not tracing.enabled()
