"""Readiness checks for ``/readyz`` (DESIGN §9, §11): ready means *consuming*.

A worker whose connection came back but whose consumer did not (a known failure mode of
aio-pika services after a reconnect) looks healthy to every liveness probe while messages pile
up. So the consumer check asks three independent sources and needs all of them:

- the consumer itself (:attr:`Consumer.consuming`: connection and channel open, started);
- the client library's live consumer table on that connection (aiormq drops a tag when the
  broker cancels it, e.g. the queue was deleted, or when it was cancelled);
- the broker (:meth:`Consumer.broker_consumer_count` on the queue). With several replicas this
  counts theirs too, which is why the client-side table is checked as well.

Register them with ``ApiContext.readiness.update(readiness_checks(...))``; ``/readyz`` runs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Gauge

from worker import metrics
from worker.messaging.topology import Topology

CHECK_TIMEOUT_S = 5.0


class ReadinessCheck(Protocol):
    """One part of readiness: returns (ok, detail)."""

    async def __call__(self) -> tuple[bool, Any]: ...


class ConsumingService(Protocol):
    """What the check needs of :class:`worker.messaging.consumer.Consumer`."""

    topology: Topology

    @property
    def consuming(self) -> bool: ...

    @property
    def connection(self) -> Any: ...

    async def broker_consumer_count(self) -> int: ...


def live_consumer_tags(connection: Any) -> int | None:
    """Consumers the client library holds open on ``connection`` (None when it cannot tell).

    Reads aiormq's per-channel ``consumers`` table through aio-pika's transport: public
    attributes, but not an aio-pika API, hence the defensive lookups.
    """
    underlay = getattr(getattr(connection, "transport", None), "connection", None)
    channels = getattr(underlay, "channels", None)
    if not isinstance(channels, dict):
        return None
    return sum(len(getattr(ch, "consumers", None) or {}) for ch in channels.values() if ch)


async def _consumer_state(service: ConsumingService, wait_s: float) -> tuple[bool, dict[str, Any]]:
    state: dict[str, Any] = {"consuming": service.consuming}
    if not service.consuming:
        return False, state
    try:
        local = live_consumer_tags(service.connection)
    except Exception:  # not started, or the library changed shape: rely on the other two
        local = None
    if local is not None:
        state["client_consumers"] = local
    try:
        count = await asyncio.wait_for(service.broker_consumer_count(), wait_s)
    except Exception as exc:
        state["error"] = type(exc).__name__
        return False, state
    state["broker_consumers"] = count
    return count >= 1 and (local is None or local >= 1), state


def consumers_check(
    consumers: Sequence[ConsumingService], *, timeout: float = CHECK_TIMEOUT_S
) -> ReadinessCheck:
    """Broker connected and our consumer registered on each queue we consume.

    Also sets ``bcsync_consumers{queue}`` to what was verified (1/0) on every check.
    """

    async def check() -> tuple[bool, Any]:
        if not consumers:
            return False, "no consumers in this process"
        ready = True
        detail: dict[str, Any] = {}
        for service in consumers:
            queue = service.topology.exports.name
            ok, state = await _consumer_state(service, timeout)
            metrics.CONSUMERS.labels(queue=queue).set(1 if ok else 0)
            detail[queue] = state
            ready = ready and ok
        return ready, detail

    return check


def store_check(
    ping: Callable[[], Awaitable[None]], *, timeout: float = CHECK_TIMEOUT_S
) -> ReadinessCheck:
    """The config/state store answers (``ping`` runs e.g. ``SELECT 1``)."""

    async def check() -> tuple[bool, Any]:
        try:
            await asyncio.wait_for(ping(), timeout)
        except TimeoutError:
            return False, f"no answer within {timeout:g}s"
        except Exception as exc:
            # The type only: driver messages can carry host names or DSNs.
            return False, f"unreachable ({type(exc).__name__})"
        return True, "reachable"

    return check


def _gauge_value(gauge: Gauge) -> float:
    for family in gauge.collect():
        for sample in family.samples:
            return float(sample.value)
    return 0.0


def bc_check() -> ReadinessCheck:
    """Time of the last successful Business Central call. Informational: never unready
    (BC being down for one organization must not take the worker out of service)."""

    async def check() -> tuple[bool, Any]:
        at = _gauge_value(metrics.BC_LAST_SUCCESS)
        if at <= 0:
            return True, {"last_success": None}
        when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        return True, {
            "last_success": when.replace("+00:00", "Z"),
            "age_s": round(max(0.0, time.time() - at), 1),
        }

    return check


def readiness_checks(
    *,
    consumers: Sequence[ConsumingService] = (),
    store_ping: Callable[[], Awaitable[None]] | None = None,
    timeout: float = CHECK_TIMEOUT_S,
) -> dict[str, ReadinessCheck]:
    """The checks for ``ApiContext.readiness``: ``broker`` (when this process consumes),
    ``store`` (when given a ping) and ``bc`` (informational)."""
    checks: dict[str, ReadinessCheck] = {}
    if consumers:
        checks["broker"] = consumers_check(consumers, timeout=timeout)
    if store_ping is not None:
        checks["store"] = store_check(store_ping, timeout=timeout)
    checks["bc"] = bc_check()
    return checks
