"""Dead-letter helpers: real dead letters made by failing events
through a real :class:`Consumer`, and ways to read the queues without our own code."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.support import factories as f
from tests.support.amqp import Got, depth_or_zero, drain, publish_many, wait_depth
from worker.config.settings import Settings
from worker.errors import Permanent, Transient
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.messaging.consumer import Consumer

CREATED = "moment.customer.created"
UPDATED = "moment.customer.updated"


@dataclass(frozen=True)
class Spec:
    """One event to send through the consumer and have dead-lettered."""

    number: str
    org: str = f.ORG
    type: str = CREATED
    code: str = "BC-POSTING-GROUP-MISSING"
    transient: bool = False  # fail transiently every time → attempts_exhausted

    @property
    def id(self) -> str:
        return f"ev-{self.org}-{self.number}"

    def body(self) -> bytes:
        return f.body(self.type, {"customer": f.customer(self.number)}, org=self.org, id_=self.id)


class Scripted:
    """A handler for customer events: fails as told per customer number, else succeeds.

    ``fail`` maps a number to an exception to raise (every time); ``calls`` counts deliveries
    per event id and ``done`` lists the event ids that succeeded.
    """

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.fail = dict(fail or {})
        self.calls: Counter[str] = Counter()
        self.done: list[str] = []

    async def __call__(self, event: Event[Any]) -> Outcome:
        self.calls[event.id] += 1
        exc = self.fail.get(event.data.customer.number)
        if exc is not None:
            raise exc
        self.done.append(event.id)
        return Outcome.ok()

    def registry(self) -> dict[str, Any]:
        return {CREATED: self, UPDATED: self}


def failure(spec: Spec) -> Exception:
    message = f"Customer posting group missing for customer {spec.number}"
    if spec.transient:
        return Transient(spec.code, message)
    return Permanent(spec.code, message, bc_status=400, bc_code="Application_DialogException")


async def make_dead_letters(settings: Settings, specs: list[Spec]) -> list[str]:
    """Send each event through a real consumer whose handler fails it; returns the event ids
    in dead-letter queue order (prefetch 1 keeps the publish order)."""
    handler = Scripted({s.number: failure(s) for s in specs})
    before = await depth_or_zero(settings, settings.queue("dead"))
    consumer = Consumer(settings.model_copy(update={"prefetch": 1}), handler.registry())
    await consumer.start()
    try:
        await publish_many(settings, [(s.type, s.body()) for s in specs])
        await wait_depth(settings, settings.queue("dead"), before + len(specs), timeout=30)
    finally:
        await consumer.stop(grace=0)
    return [s.id for s in specs]


async def dead_ids(settings: Settings) -> list[str]:
    """Event ids in the dead-letter queue, in order, taking them out (acked)."""
    return ids_of(await drain(settings, settings.queue("dead")))


def ids_of(messages: list[Got]) -> list[str]:
    return [str(json.loads(m.body)["id"]) for m in messages]
