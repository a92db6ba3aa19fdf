"""The exports consumer: deliver each event to its handler and make its outcome durable.

Outcome → action (the message is acked only after the action is confirmed by the broker):
- success, or skipped (no config / object switched off) → ack;
- waiting (a person must act in BC first, e.g. approve an invoice) → ack, reported to the
  observers' ``on_waiting`` (status, notifications), counted with outcome ``waiting``;
- ``InvalidEvent`` or ``Permanent`` → publish to the dead-letter queue with headers, then ack;
- ``Transient`` or an unexpected exception → publish to the next retry-ladder queue with
  ``x-bc-attempt`` + 1, then ack; when the ladder is used up → dead letter;
- shutdown past the grace period → nack with requeue (redelivered later, never lost).

Fair share of the prefetch (issue #22): an organization already holding its share of the
in-flight messages does not get another slot. Its next message is *parked*: published (with a
confirm) to a retry-ladder queue with its attempt unchanged, then acked, and back in the exports
queue when the organization can take it (its own TTL, at most that step). So one organization's
flood waits on the ladder, not in our slots, and the consumer keeps reaching the other
organizations' messages behind it.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError

from worker import metrics, tracing
from worker.config.settings import Settings
from worker.errors import HandlerError, InvalidEvent, Permanent, Transient
from worker.events.envelope import Delivery, Event, parse
from worker.events.handlers import (
    DeadLetterCopy,
    FailureReport,
    Observer,
    Outcome,
    Registry,
    WaitingReport,
    subject_of,
)
from worker.events.models import INCOMING
from worker.log import bound
from worker.messaging import headers as H
from worker.messaging.connection import connect_robust
from worker.messaging.publisher import Publisher, make_message
from worker.messaging.retry_watch import RetryWatch
from worker.messaging.topology import Topology
from worker.runtime import patiently
from worker.store import unavailable as store_unavailable

log = structlog.get_logger(__name__)

RECONNECT_INTERVAL_S = 2.0
# How long start() keeps setting up through connection cuts before it gives up (as the runtime
# waits for the broker at start), and what counts as a cut rather than a refusal.
START_WAIT_S = 60.0
CONNECTION_TROUBLE = (AMQPConnectionError, ChannelInvalidStateError, ConnectionError, TimeoutError)

# Fair share. An organization may always hold ORG_FLOOR messages in flight: BC serves 5 requests
# at once per tenant (worker.bc.limits) and twice that keeps its limiter fed. Beyond the floor it
# gets an equal share of the prefetch among the organizations in flight plus one, so a slot
# stays free for an organization that is not in flight yet. With a prefetch at or below the
# floor there is no room for a share and nothing is parked.
ORG_FLOOR = 10
# A parked message comes back about when its organization can take it: the messages parked
# before it, at the pace the organization is served (its completions over RATE_WINDOW_S),
# offered OVERFEED times faster so that it never runs dry because of our estimate (the surplus
# finds it full and is parked again). It waits on the smallest ladder step at least that long,
# with that wait as the message's own TTL, and never longer than PARK_MAX_S.
PARK_MAX_S = 600.0
RATE_WINDOW_S = 30.0
OVERFEED = 1.5
# Until an organization finished ORG_FLOOR messages in its busy period, assume it is served
# this fast (messages/s).
RATE_UNKNOWN = float(ORG_FLOOR)
# Releases between sweeps that forget organizations with nothing in flight or parked.
FORGET_EVERY = 1000


def _peek(body: bytes) -> dict[str, Any]:
    """Best-effort id/org/type of an invalid message, for logs and dead-letter headers."""
    try:
        raw = json.loads(body)
    except Exception:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        k: str(raw[k])[:200]
        for k in ("id", "organizationid", "type")
        if isinstance(raw.get(k), str | int)
    }


@dataclass(slots=True)
class _OrgLoad:
    since: float  # when this process started watching the organization
    in_flight: int = 0
    done: deque[float] = field(default_factory=deque)  # completion times within the window
    parked: list[float] = field(default_factory=list)  # heap: when parked messages come back


class FairShare:
    """Messages in flight per organization, and how long a busy one's excess waits.

    Per process (each worker shares its own prefetch); memory is bounded by the organizations
    in flight or parked in the last :data:`RATE_WINDOW_S`, not by the configured ones.
    """

    def __init__(self, prefetch: int, steps: Sequence[float]) -> None:
        self.prefetch = prefetch
        self.steps = sorted(steps)
        self._orgs: dict[str, _OrgLoad] = {}
        self._active = 0  # organizations with a message in flight
        self._releases = 0

    def share(self) -> int:
        """How many messages one organization may hold in flight now."""
        return max(ORG_FLOOR, self.prefetch // (self._active + 1))

    def in_flight(self, org: str) -> int:
        load = self._orgs.get(org)
        return load.in_flight if load else 0

    def admit(self, org: str, now: float) -> bool:
        """Take a slot for ``org``'s message, or False when it holds its share already."""
        load = self._orgs.get(org)
        if load is None:
            load = self._orgs[org] = _OrgLoad(since=now)
        elif not load.in_flight:
            _prune(load, now)
            if not load.parked:
                # A new busy period: its pace is measured afresh (an idle spell before it, or
                # a single earlier event, says nothing about how fast BC takes it now).
                load.since = now
                load.done.clear()
        share = self.share()
        if load.in_flight >= share and share < self.prefetch:
            return False
        load.in_flight += 1
        if load.in_flight == 1:
            self._active += 1
        return True

    def release(self, org: str, now: float) -> None:
        """The message admitted for ``org`` has its outcome (whatever it was)."""
        load = self._orgs[org]
        load.in_flight -= 1
        if load.in_flight == 0:
            self._active -= 1
        load.done.append(now)
        _prune(load, now)
        self._releases += 1
        if self._releases % FORGET_EVERY == 0:
            self._forget(now)

    def park(self, org: str, now: float) -> tuple[float, bool]:
        """Seconds a parked message of ``org`` waits, and whether it is the first one parked
        of this organization for a while."""
        load = self._orgs[org]
        _prune(load, now)
        first = not load.parked
        if len(load.done) >= ORG_FLOOR:
            observed = max(1.0, min(now - load.since, RATE_WINDOW_S))
            rate = len(load.done) / observed
        else:
            rate = RATE_UNKNOWN
        wait = min((len(load.parked) + 1) / (rate * OVERFEED), PARK_MAX_S, self.steps[-1])
        heapq.heappush(load.parked, now + wait)
        return wait, first

    def _forget(self, now: float) -> None:
        for org, load in list(self._orgs.items()):
            _prune(load, now)
            if not load.in_flight and not load.parked and not load.done:
                del self._orgs[org]


def _prune(load: _OrgLoad, now: float) -> None:
    """Drop completions older than the window and parked messages already back."""
    horizon = now - RATE_WINDOW_S
    while load.done and load.done[0] < horizon:
        load.done.popleft()
    while load.parked and load.parked[0] <= now:
        heapq.heappop(load.parked)


class Consumer:
    """Consumes the exports queue with a robust connection; see the module docstring."""

    name = "consume"

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        observers: Sequence[Observer] = (),
        connection: AbstractRobustConnection | None = None,
        watch: RetryWatch | None = None,
    ) -> None:
        self.settings = settings
        self.watch = watch
        self.topology = Topology.from_settings(settings)
        self.registry = registry
        self.observers = list(observers)
        self._connection = connection
        self._own_connection = connection is None
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._publisher: Publisher | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.shares = (
            FairShare(settings.prefetch, [step for step, _ in self.topology.retries])
            if settings.fair_share
            else None
        )

    @property
    def connection(self) -> AbstractRobustConnection:
        assert self._connection is not None, "consumer not started"
        return self._connection

    @property
    def publisher(self) -> Publisher:
        assert self._publisher is not None, "consumer not started"
        return self._publisher

    async def start(self) -> None:
        """Connect, declare the topology, and start consuming."""
        if self._connection is None:
            name = f"bc-sync consumer {socket.gethostname()}:{os.getpid()}"
            self._connection = await connect_robust(
                self.settings, name=name, reconnect_interval=RECONNECT_INTERVAL_S
            )
        connection = self._connection

        async def subscribe() -> None:
            try:
                await self._subscribe(connection)
            except CONNECTION_TROUBLE:
                # Cut while we set up (a restart during a broker cut): the robust connection
                # reconnects by itself; a fresh channel is opened on the next try.
                if self._channel is not None:
                    with suppress(Exception):
                        await self._channel.close()
                    self._channel = None
                raise

        await patiently(
            subscribe,
            START_WAIT_S,
            retry=lambda exc: isinstance(exc, CONNECTION_TROUBLE),
            event="consumer.start_retry",
        )
        if self.watch is not None:
            await self.watch.start(connection, self.publisher)
        metrics.CONSUMERS.labels(queue=self.topology.exports.name).set(1)
        log.info(
            "consumer.consuming", queue=self.topology.exports.name, prefetch=self.settings.prefetch
        )

    async def _subscribe(self, connection: AbstractRobustConnection) -> None:
        """Open our channel, declare the topology and register the consumer."""
        channel = await connection.channel()
        assert isinstance(channel, AbstractRobustChannel)
        self._channel = channel
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        queues = await self.topology.apply(channel)
        self._publisher = Publisher(connection, self.topology.exchange)
        self._queue = queues[self.topology.exports.name]
        self._consumer_tag = await self._queue.consume(self._on_message)

    @property
    def consuming(self) -> bool:
        """True while our connection and channel are open and our consumer is registered."""
        return (
            not self._stopping
            and self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
            and self._consumer_tag is not None
        )

    @property
    def in_flight(self) -> int:
        """Messages taken from the queue whose outcome is not settled yet."""
        return len(self._inflight)

    async def broker_consumer_count(self) -> int:
        """Consumers the broker sees on the exports queue (checked, not assumed)."""
        if not self.consuming:
            return 0
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.topology.exports.name, passive=True)
            count = queue.declaration_result.consumer_count
            return int(count or 0)
        finally:
            await channel.close()

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking messages, let in-flight ones finish within ``grace``, requeue the rest."""
        if self._stopping:
            return
        self._stopping = True
        grace = self.settings.shutdown_grace_s if grace is None else grace
        if self._queue is not None and self._consumer_tag is not None:
            with suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        metrics.CONSUMERS.labels(queue=self.topology.exports.name).set(0)
        if self.watch is not None:
            await self.watch.stop()
        pending = set(self._inflight)
        if pending:
            log.info("consumer.draining", in_flight=len(pending), grace_s=grace)
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)
                log.warning("consumer.requeued_unfinished", count=len(still))
        if self._publisher is not None:
            with suppress(Exception):
                await self._publisher.close()
        if self._own_connection and self._connection is not None:
            with suppress(Exception):
                await self._connection.close()
        log.info("consumer.stopped")

    # --- message handling -------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            await self._process(message)
        except asyncio.CancelledError:
            # Shutdown past the grace period: hand the message back, it is not done.
            with suppress(Exception):
                await message.nack(requeue=True)
            metrics.EVENTS_HANDLED.labels(type="any", outcome="requeued").inc()
        finally:
            self._inflight.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        hdrs = dict(message.headers or {})
        attempt = _int(hdrs.get(H.ATTEMPT), 1)
        routing_key = str(hdrs.get(H.ROUTING_KEY) or message.routing_key or "")
        expected = routing_key if routing_key in INCOMING else None
        label = routing_key if routing_key in INCOMING else "invalid"
        metrics.child(metrics.EVENTS_CONSUMED, label).inc()
        event: Event[Any] | None = None
        try:
            event = parse(message.body, routing_key=expected)
        except InvalidEvent as exc:
            peek = _peek(message.body)
            with (
                bound(
                    org=peek.get("organizationid"),
                    event_id=peek.get("id"),
                    event_type=peek.get("type"),
                    attempt=attempt,
                ),
                tracing.span(
                    "consume invalid event",
                    kind=tracing.SpanKind.CONSUMER,
                    attributes=self._span_attributes(message, routing_key, attempt),
                ),
            ):
                await self._dead_letter(message, hdrs, exc, "invalid", attempt, None, routing_key)
            metrics.child(metrics.EVENTS_HANDLED, label, "dead_lettered").inc()
            return
        label = event.type
        if self.watch is not None and (attempt > 1 or H.PARKED in hdrs or H.RECOVERED in hdrs):
            await self.watch.back(event.id)  # off the ladder: nothing to watch any more
        if self.shares is not None and not self.shares.admit(event.org, time.monotonic()):
            with bound(org=event.org, event_id=event.id, event_type=event.type, attempt=attempt):
                outcome_label = await self._park(message, hdrs, event, routing_key)
            metrics.child(metrics.EVENTS_HANDLED, label, outcome_label).inc()
            return
        try:
            await self._consume(message, hdrs, event, attempt, routing_key, started)
        finally:
            if self.shares is not None:
                self.shares.release(event.org, time.monotonic())

    async def _consume(
        self,
        message: AbstractIncomingMessage,
        hdrs: dict[str, Any],
        event: Event[Any],
        attempt: int,
        routing_key: str,
        started: float,
    ) -> None:
        label = event.type
        event = replace(event, delivery=_delivery(hdrs, attempt))
        # The consume span continues the sender's trace (the event's traceparent); BC requests
        # and publishes are its children, outgoing events carry it on.
        with (
            bound(org=event.org, event_id=event.id, event_type=event.type, attempt=attempt),
            tracing.span(
                f"consume {event.type}",
                kind=tracing.SpanKind.CONSUMER,
                parent=event.trace_parent(),
                attributes=self._span_attributes(message, routing_key, attempt, event),
            ) as span,
        ):
            outcome_label = await self._handle(message, hdrs, event, attempt, routing_key)
            if span.is_recording():
                span.set_attribute("bc_sync.outcome", outcome_label)
        metrics.child(metrics.EVENTS_HANDLED, label, outcome_label).inc()
        metrics.child(metrics.HANDLER_SECONDS, label).observe(time.perf_counter() - started)

    def _span_attributes(
        self,
        message: AbstractIncomingMessage,
        routing_key: str,
        attempt: int,
        event: Event[Any] | None = None,
    ) -> tracing.Attributes | None:
        """Messaging and CloudEvents attributes of the consume span (ids and names only)."""
        if not tracing.enabled():
            return None
        attributes: dict[str, tracing.AttributeValue] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.topology.exports.name,
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "bc_sync.attempt": attempt,
        }
        if message.message_id:
            attributes["messaging.message.id"] = message.message_id
        if event is not None:
            attributes.update(
                {
                    "cloudevents.event_id": event.id,
                    "cloudevents.event_type": event.type,
                    "cloudevents.event_source": event.envelope.source,
                    "bc_sync.organization": event.org,
                }
            )
        return attributes

    async def _handle(
        self,
        message: AbstractIncomingMessage,
        hdrs: dict[str, Any],
        event: Event[Any],
        attempt: int,
        routing_key: str,
    ) -> str:
        handler = self.registry.get(event.type)
        try:
            if handler is None:
                raise InvalidEvent(f"no handler for {event.type}", code="EVENT-UNKNOWN-TYPE")
            outcome = await handler(event)
        except (InvalidEvent, Permanent) as exc:
            cls = "invalid" if isinstance(exc, InvalidEvent) else "permanent"
            await self._dead_letter(message, hdrs, exc, cls, attempt, event, routing_key)
            return "dead_lettered"
        except Transient as exc:
            return await self._retry(message, hdrs, exc, attempt, event, routing_key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if store_unavailable(exc):
                # The database is down or restarting: the event waits on the ladder like any
                # transient failure, under its own code and without a stack trace per event.
                log.warning("consumer.store_unavailable", error=type(exc).__name__)
                wrapped = Transient(
                    "STORE-UNAVAILABLE", "The integration's database could not be reached."
                )
                return await self._retry(message, hdrs, wrapped, attempt, event, routing_key)
            # A bug or an unforeseen failure: never lose the message, treat it as transient.
            log.exception("consumer.handler_crashed")
            wrapped = Transient("INTERNAL-ERROR", f"{type(exc).__name__}: {exc}")
            return await self._retry(message, hdrs, wrapped, attempt, event, routing_key)
        if outcome.kind == "waiting":
            await self._notify_waiting(event, outcome)
            await message.ack()
            log.warning(
                "consumer.waiting",
                code=outcome.reason,
                reason=outcome.message,
                **(outcome.detail or {}),
            )
            return "waiting"
        await self._notify_success(event, outcome)
        await message.ack()
        if outcome.kind == "skipped":
            metrics.SKIPPED.labels(type=event.type, reason=outcome.reason or "").inc()
            log.info("consumer.skipped", reason=outcome.reason)
            return "skipped"
        if outcome.kind == "superseded":
            metrics.child(metrics.SUPERSEDED, event.type).inc()
            log.info("consumer.superseded", reason=outcome.reason)
            return "superseded"
        log.info("consumer.succeeded", **(outcome.detail or {}))
        return "succeeded"

    async def _park(
        self,
        message: AbstractIncomingMessage,
        hdrs: dict[str, Any],
        event: Event[Any],
        routing_key: str,
    ) -> str:
        """Move a message of an organization over its share to the ladder, attempt unchanged."""
        assert self.shares is not None
        delay, first = self.shares.park(event.org, time.monotonic())
        # The smallest step at least that long, the wait as the message's own TTL: it comes
        # back on time unless a message ahead of it in that queue is due later (TTLs expire at
        # the head), and never later than the step.
        queue = self.topology.retry_queue(delay)
        parked = (H.integer(hdrs.get(H.PARKED)) or 0) + 1
        new_headers = {**hdrs, H.ROUTING_KEY: routing_key, H.PARKED: parked}
        if not await self._to_ladder(message, event, queue, new_headers, delay, expiration=delay):
            return "requeued"
        with suppress(Exception):
            await message.ack()
        metrics.child(metrics.PARKED, event.type).inc()
        if first:
            # Once per busy period of the organization, not once per message of a flood.
            log.info(
                "consumer.parking",
                share=self.shares.share(),
                in_flight=self.shares.in_flight(event.org),
                delay_s=round(delay, 3),
            )
        log.debug("consumer.parked", delay_s=round(delay, 3), parked=parked)
        return "parked"

    async def _retry(
        self,
        message: AbstractIncomingMessage,
        hdrs: dict[str, Any],
        exc: Transient,
        attempt: int,
        event: Event[Any],
        routing_key: str,
    ) -> str:
        if attempt >= self.settings.attempts:
            await self._dead_letter(
                message, hdrs, exc, "attempts_exhausted", attempt, event, routing_key
            )
            return "dead_lettered"
        delay = self.settings.retry_delays[attempt - 1]
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        queue = self.topology.retry_queue(delay)
        tracing.fail_current(exc.code)
        new_headers = H.retry_headers(
            hdrs, routing_key=routing_key, attempt=attempt, code=exc.code, message=exc.message
        )
        wait = self.topology.delay_of(queue)
        if not await self._to_ladder(message, event, queue, new_headers, wait):
            return "requeued"
        await self._report(exc, event, attempt, final=False)
        with suppress(Exception):
            await message.ack()
        metrics.RETRY_HOPS.labels(type=event.type, delay=str(self.topology.delay_of(queue))).inc()
        log.warning(
            "consumer.retry_scheduled",
            code=exc.code,
            error=H.short(exc.message),
            next_attempt=attempt + 1,
            delay_s=self.topology.delay_of(queue),
        )
        return "retried"

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        hdrs: dict[str, Any],
        exc: HandlerError,
        error_class: str,
        attempt: int,
        event: Event[Any] | None,
        routing_key: str,
    ) -> None:
        peek = _peek(message.body) if event is None else {}
        object_type, _, number = subject_of(event) if event is not None else (None, None, None)
        tracing.fail_current(exc.code)
        new_headers = H.dead_letter_headers(
            hdrs,
            routing_key=routing_key,
            code=exc.code,
            message=exc.message,
            error_class=error_class,
            attempts=attempt,
            org=event.org if event else peek.get("organizationid"),
            event_id=event.id if event else peek.get("id"),
            event_type=event.type if event else peek.get("type"),
            subject=exc.subject or (f"{object_type} {number}" if object_type else ""),
            bc_status=exc.bc_status,
            bc_code=exc.bc_code,
            missing=exc.missing,
        )
        if not await self._route(message, self.topology.dead.name, new_headers):
            return
        copy = DeadLetterCopy(
            message.body,
            new_headers,
            content_type=message.content_type or "application/cloudevents+json",
            message_id=message.message_id,
        )
        await self._report(exc, event, attempt, final=True, peek=peek, dead_letter=copy)
        with suppress(Exception):
            await message.ack()
        metrics.DEAD_LETTERS.labels(code=exc.code).inc()
        log.error(
            "consumer.dead_lettered",
            code=exc.code,
            error=H.short(exc.message),
            error_class=error_class,
        )

    async def _to_ladder(
        self,
        message: AbstractIncomingMessage,
        event: Event[Any],
        queue: str,
        new_headers: dict[str, Any],
        wait_s: float,
        *,
        expiration: float | None = None,
    ) -> bool:
        """Publish to a retry queue, recorded first for the retry watch (when it is on)."""
        if self.watch is not None:
            await self.watch.scheduled(
                event_id=event.id,
                org=event.org,
                queue=queue,
                body=message.body,
                headers=new_headers,
                wait_s=wait_s,
            )
        if await self._route(message, queue, new_headers, expiration=expiration):
            return True
        if self.watch is not None:
            await self.watch.back(event.id)  # handed back to the exports queue instead
        return False

    async def _route(
        self,
        message: AbstractIncomingMessage,
        queue: str,
        new_headers: dict[str, Any],
        *,
        expiration: float | None = None,
    ) -> bool:
        """Publish a copy to ``queue`` with a confirm; on failure give the original back."""
        copy = make_message(
            message.body,
            message_id=message.message_id,
            headers=new_headers,
            content_type=message.content_type or "application/cloudevents+json",
        )
        if expiration is not None:
            copy.expiration = expiration
        try:
            await self.publisher.to_queue(queue, copy)
        except Exception as exc:
            log.error("consumer.route_failed", queue=queue, error=str(exc))
            with suppress(Exception):
                await message.nack(requeue=True)
            return False
        return True

    async def _report(
        self,
        exc: HandlerError,
        event: Event[Any] | None,
        attempt: int,
        *,
        final: bool,
        peek: dict[str, Any] | None = None,
        dead_letter: DeadLetterCopy | None = None,
    ) -> None:
        object_type, moment_id, number = subject_of(event) if event else (None, None, None)
        peek = peek or {}
        report = FailureReport(
            org=event.org if event else peek.get("organizationid"),
            event_id=event.id if event else peek.get("id"),
            event_type=event.type if event else peek.get("type"),
            object_type=object_type,
            moment_id=moment_id,
            moment_number=number,
            code=exc.code,
            message=H.short(exc.message),
            attempts=attempt,
            final=final,
            notify_now=isinstance(exc, Transient) and exc.notify,
            bc_code=exc.bc_code,
            dead_letter=dead_letter,
        )
        for observer in self.observers:
            try:
                await observer.on_failure(report)
            except Exception:
                log.exception("consumer.failure_observer_failed", observer=type(observer).__name__)

    async def _notify_waiting(self, event: Event[Any], outcome: Outcome) -> None:
        object_type, moment_id, number = subject_of(event)
        detail = outcome.detail or {}
        report = WaitingReport(
            org=event.org,
            event_id=event.id,
            event_type=event.type,
            object_type=object_type,
            moment_id=moment_id,
            moment_number=number,
            code=outcome.reason or "",
            message=H.short(outcome.message or ""),
            ref=str(detail["bc_number"]) if detail.get("bc_number") else None,
        )
        for observer in self.observers:
            try:
                await observer.on_waiting(report)
            except Exception:
                log.exception("consumer.waiting_observer_failed", observer=type(observer).__name__)

    async def _notify_success(self, event: Event[Any], outcome: Outcome) -> None:
        for observer in self.observers:
            try:
                await observer.on_success(event, outcome)
            except Exception:
                log.exception("consumer.success_observer_failed", observer=type(observer).__name__)


def _delivery(hdrs: dict[str, Any], attempt: int) -> Delivery:
    """The delivery facts handlers and the ledger may use (replays, healing)."""
    replay_id = hdrs.get(H.REPLAY_ID)
    healed = hdrs.get(H.HEALED)
    return Delivery(
        attempt=attempt,
        replay_id=H.label(replay_id) if replay_id else None,
        healed=H.label(healed) if healed else None,
    )


def _int(value: Any, default: int) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return default
