"""Tracing with OpenTelemetry: spans for an event's path through the worker, linked across
services by the CloudEvents distributed-tracing extension (``traceparent`` / ``tracestate``).

- Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
  set: then :func:`configure` installs the SDK with a batching OTLP/HTTP exporter (the
  exporter reads the other ``OTEL_EXPORTER_OTLP_*`` settings, the resource reads
  ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``). ``OTEL_SDK_DISABLED=true`` keeps it
  off.
- Off costs next to nothing: :func:`span` then starts no span at all. It only makes an
  incoming event's trace context current, so outgoing events and log lines still carry
  Moment's trace (the worker is a transparent hop instead of a break in the trace).
- Never a secret in a span: callers pass names, ids, statuses and URL paths without their
  query (no tokens, no bodies, no ``$filter`` values).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:  # the SDK is imported only when tracing is switched on
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "AttributeValue",
    "Attributes",
    "Context",
    "Span",
    "SpanKind",
    "StatusCode",
    "configure",
    "enabled",
    "extract",
    "fail",
    "fail_current",
    "span",
    "trace_context",
    "use",
]

SERVICE_NAME = "bc-sync"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PROPAGATOR = TraceContextTextMapPropagator()
Attributes = Mapping[str, AttributeValue]
Context = otel_context.Context


class _State:
    """The tracer in use; ``None`` while tracing is off."""

    tracer: trace.Tracer | None = None
    provider: TracerProvider | None = None


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def endpoint_configured(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def configure(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install the SDK with the OTLP/HTTP exporter when an OTLP endpoint is configured;
    else leave tracing off (returns None)."""
    env = os.environ if env is None else env
    if not endpoint_configured(env):
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "http/protobuf"
    if protocol.strip() != "http/protobuf":
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: bc-sync exports traces over OTLP/HTTP "
            "(http/protobuf) only; point it at the collector's HTTP port (4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return use(OTLPSpanExporter(), batch=True, install_global=True)


def use(
    exporter: SpanExporter, *, batch: bool = True, install_global: bool = False
) -> TracerProvider:
    """Trace from now on, exporting to ``exporter`` (tests: an in-memory exporter with
    ``batch=False``). ``install_global`` also makes it OpenTelemetry's global provider (once
    per process; ``bc-sync run``)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": SERVICE_NAME}).merge(
        Resource.create()  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over ours
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    if install_global:
        trace.set_tracer_provider(provider)
    _state.provider = provider
    _state.tracer = provider.get_tracer("bc-sync")
    return provider


def shutdown() -> None:
    """Flush what is batched and stop tracing (end of ``bc-sync run``, end of a test)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def extract(traceparent: Any, tracestate: Any = None) -> Context | None:
    """The trace context an incoming event carries (None without a valid ``traceparent``;
    W3C Trace Context says to start a new trace then, not to refuse the event)."""
    if not isinstance(traceparent, str) or not traceparent:
        return None
    carrier = {TRACEPARENT: traceparent}
    if isinstance(tracestate, str) and tracestate:
        carrier[TRACESTATE] = tracestate
    ctx = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def trace_context() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, for an outgoing event;
    empty when there is none."""
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Attributes | None = None,
) -> Iterator[Span]:
    """A span around the block, current inside it (a child of ``parent`` when given, else of
    the current span). Exceptions are recorded by type only: their text may quote input.

    Tracing off: no span; with ``parent``, that context is current inside the block."""
    tracer = _state.tracer
    if tracer is None:
        if parent is None:
            yield INVALID_SPAN
            return
        token = otel_context.attach(parent)
        try:
            yield trace.get_current_span(parent)
        finally:
            otel_context.detach(token)
        return
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            status = getattr(current, "status", None)  # the SDK's spans have one
            if status is None or status.status_code is not StatusCode.ERROR:
                fail(current, type(exc).__name__)  # unless the block said why already
            raise


def fail_current(reason: str) -> None:
    """:func:`fail` the current span (no-op when tracing is off)."""
    fail(trace.get_current_span(), reason)


def fail(current: Span, reason: str) -> None:
    """Mark a span failed with a short reason (an error code or an exception's type)."""
    if current.is_recording():
        current.set_attribute("error.type", reason)
        current.set_status(Status(StatusCode.ERROR, reason))
