"""Tracing: an event's whole path through a real worker (broker, SQLite, msal, the BC emulator)
as OpenTelemetry spans, continued from the incoming event's ``traceparent`` and carried on in
the outgoing one (CloudEvents distributed tracing); free of spans when tracing is off, yet the
trace passes through; exported over OTLP/HTTP by ``bc-sync run`` when the endpoint is set."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import structlog
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from structlog.testing import LogCapture

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.amqp import drop_topology
from tests.support.api import wait_ready
from tests.support.db import KEY
from tests.support.net import free_port
from tests.support.settings import API_TOKEN, emulator_settings
from tests.support.wait import wait_for
from worker import tracing
from worker.app import build_services
from worker.config.model import parse_config
from worker.config.settings import Settings
from worker.log import add_trace_ids
from worker.runtime import Service
from worker.store import Store

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
TRACESTATE = "moment=web-7"
CREATED = "moment.customer.created"


@contextmanager
def capture_logs() -> Iterator[list[Any]]:
    """Like structlog.testing.capture_logs, with the product's trace-id processor first."""
    capture = LogCapture()
    processors = structlog.get_config()["processors"]
    before = list(processors)
    processors[:] = [add_trace_ids, capture]  # in place: cached loggers see it too
    try:
        yield capture.entries
    finally:
        processors[:] = before


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    tracing.use(exporter, batch=False)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
async def worker_settings(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Settings]:
    settings = emulator_settings(tmp_path, emulator, amqp_url=amqp_url, http_port=free_port())
    store = Store.from_settings(settings)
    await store.migrate()
    await store.configs.put(f.ORG, parse_config(f.dialog()))
    await store.close()
    yield settings
    await drop_topology(settings)


async def run_one_event(settings: Settings, body: bytes) -> dict[str, Any]:
    """A consuming worker handles ``body``; returns the bc.customer.exported it sends."""
    services: list[Service] = await build_services(settings, ["consume"])
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            outgoing = await channel.declare_queue(exclusive=True)
            await outgoing.bind(settings.exchange, "bc.customer.exported")
            exchange = await channel.get_exchange(settings.exchange)
            await exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=CREATED)
            message = await wait_for(lambda: outgoing.get(fail=False, no_ack=True), 30)
            exported: dict[str, Any] = json.loads(message.body)
            return exported
    finally:
        for service in reversed(started):
            await service.stop()


def traced_event(number: str) -> bytes:
    envelope = f.envelope(CREATED, {"customer": f.customer(number)})
    envelope.update(traceparent=TRACEPARENT, tracestate=TRACESTATE)
    return json.dumps(envelope).encode()


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


async def test_incoming_trace_continued_through_bc_requests_into_the_outgoing_event(
    worker_settings: Settings, spans: InMemorySpanExporter
) -> None:
    with capture_logs() as logs:
        exported = await run_one_event(worker_settings, traced_event("10070"))
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    consume = [s for s in finished if s.name == f"consume {CREATED}"]
    assert len(consume) == 1, [s.name for s in finished]
    root = consume[0]
    assert root.kind is SpanKind.CONSUMER
    assert root.context is not None and root.parent is not None
    # The consume span continues Moment's trace: same trace id, parent = the incoming span.
    assert hexid(root.context.trace_id, 32) == TRACE_ID
    assert hexid(root.parent.span_id, 16) == SPAN_ID
    assert root.parent.is_remote
    assert str(root.context.trace_state) == TRACESTATE or "moment=web-7" in str(
        root.context.trace_state.to_header()
    )
    attrs = dict(root.attributes or {})
    assert attrs["cloudevents.event_type"] == CREATED
    assert attrs["bc_sync.organization"] == f.ORG
    assert attrs["bc_sync.outcome"] == "succeeded"
    assert root.status.status_code is StatusCode.UNSET

    # Each BC request is a child span of the consume span.
    bc = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert len(bc) >= 3, [s.name for s in finished]  # find, create, read-back at least
    for span in bc:
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context is not None and span.context.trace_id == root.context.trace_id
        a = dict(span.attributes or {})
        assert a["http.request.method"] in {"GET", "POST", "PATCH"}
        assert isinstance(a["http.response.status_code"], int)
        assert "?" not in str(a["url.path"])  # never the query ($filter values)
    assert {s.name.split(" ", 1)[1] for s in bc} >= {"customers"}

    # The publish of bc.customer.exported is a child too, and the outgoing event carries the
    # trace on: same trace id, the consume span as its parent, tracestate passed on.
    publish = [s for s in finished if s.name == "publish bc.customer.exported"]
    assert len(publish) == 1 and publish[0].kind is SpanKind.PRODUCER
    assert publish[0].parent is not None
    assert publish[0].parent.span_id == root.context.span_id
    version, trace_id, parent_id, flags = exported["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id == hexid(root.context.span_id, 16)
    assert exported["tracestate"] == TRACESTATE

    # Log lines written while handling carry the trace.
    handled = [e for e in logs if e["event"] == "consumer.succeeded"]
    assert handled and handled[0]["trace_id"] == TRACE_ID
    assert handled[0]["span_id"] == hexid(root.context.span_id, 16)

    # No secret, token or body in any span.
    dump = repr([(s.name, dict(s.attributes or {}), s.events) for s in finished])
    for secret in (f.dialog()["client_secret"], API_TOKEN, "Bearer", "$filter", "Kund 10070"):
        assert secret not in dump


async def test_a_failing_event_is_an_error_span_with_its_code(
    worker_settings: Settings, spans: InMemorySpanExporter
) -> None:
    envelope = f.envelope(
        "moment.invoice.created",
        {
            "invoice": f.invoice(
                "1866",
                cust=f.customer("10071"),
                lines=[
                    {
                        "description": "x",
                        "quantity": 1,
                        "unit_price": 10.0,
                        "account_number": "9999",
                    }
                ],
            )
        },
    )
    envelope["traceparent"] = TRACEPARENT
    services: list[Service] = await build_services(worker_settings, ["consume"])
    for service in services:
        await service.start()
    try:
        connection = await aio_pika.connect(worker_settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(worker_settings.exchange)
            await exchange.publish(
                aio_pika.Message(json.dumps(envelope).encode()),
                routing_key="moment.invoice.created",
            )
            await wait_for(
                lambda: [s for s in spans.get_finished_spans() if s.name.startswith("consume ")],
                30,
            )
    finally:
        for service in reversed(services):
            await service.stop()
    (root,) = [s for s in spans.get_finished_spans() if s.name.startswith("consume ")]
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "BC-ACCOUNT-MISSING"
    assert dict(root.attributes or {})["bc_sync.outcome"] == "dead_lettered"
    dead = [s for s in spans.get_finished_spans() if s.name.endswith(".dead")]
    assert len(dead) == 1 and dead[0].parent is not None
    assert root.context is not None and dead[0].parent.span_id == root.context.span_id


async def test_tracing_off_makes_no_spans_but_passes_the_trace_on(
    worker_settings: Settings,
) -> None:
    """Without the SDK nothing is recorded, yet the outgoing event continues Moment's trace
    (the incoming span as its parent) and log lines carry its trace id."""
    assert not tracing.enabled()
    with capture_logs() as logs:
        exported = await run_one_event(worker_settings, traced_event("10072"))
    assert exported["traceparent"] == TRACEPARENT
    assert exported["tracestate"] == TRACESTATE
    handled = [e for e in logs if e["event"] == "consumer.succeeded"]
    assert handled and handled[0]["trace_id"] == TRACE_ID

    # An event without trace context gets none back, and no trace id in the logs.
    with capture_logs() as logs:
        plain = await run_one_event(worker_settings, f.customer_event("10073"))
    assert "traceparent" not in plain and "tracestate" not in plain
    assert all("trace_id" not in e for e in logs)


async def test_bc_sync_run_exports_spans_over_otlp_http(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` set: ``bc-sync run`` sends its spans to the collector
    (a local OTLP/HTTP receiver here), with the incoming event's trace id."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(collector)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings = emulator_settings(tmp_path, emulator, amqp_url=amqp_url, http_port=free_port())
    store = Store.from_settings(settings)
    await store.migrate()
    await store.configs.put(f.ORG, parse_config(f.dialog()))
    await store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_SYNC_", "OTEL_"))}
    env.update(
        {k: v for k, v in emulator.settings_env().items()},
        BC_SYNC_AMQP_URL=amqp_url,
        BC_SYNC_QUEUE_PREFIX=settings.queue_prefix,
        BC_SYNC_EXCHANGE=settings.exchange,
        BC_SYNC_DATABASE_URL=settings.database_url.get_secret_value(),
        BC_SYNC_SECRET_KEY=KEY,
        BC_SYNC_HTTP_PORT=str(settings.http_port),
        BC_SYNC_LOG_FORMAT="json",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_SERVICE_NAME="bc-sync-test",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        "run",
        "--roles",
        "consume",
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{settings.http_port}/readyz")  # consuming
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(settings.exchange)
            await exchange.publish(aio_pika.Message(traced_event("10074")), routing_key=CREATED)

        def names() -> set[str]:
            return {
                span.name
                for message in received
                for resource in message.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            }

        got: list[str] | None = None
        if not await wait_for(lambda: f"consume {CREATED}" in names(), 30, 0.1, fail=False):
            got = sorted(names())
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        await runner.cleanup()
        await drop_topology(settings)
    assert got is None, f"spans received: {got}\n{out.decode()[-3000:]}"
    assert proc.returncode == 0, out.decode()[-3000:]
    spans_ = [
        (resource, span)
        for message in received
        for resource in message.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    consume = [span for _, span in spans_ if span.name == f"consume {CREATED}"]
    assert consume[0].trace_id.hex() == TRACE_ID
    assert consume[0].parent_span_id.hex() == SPAN_ID
    service = {a.key: a.value.string_value for a in spans_[0][0].resource.attributes}[
        "service.name"
    ]
    assert service == "bc-sync-test"
    assert any(span.kind == span.SPAN_KIND_CLIENT for _, span in spans_)
