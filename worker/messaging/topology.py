"""The RabbitMQ topology of DESIGN §4, declared idempotently and exportable as definitions.

- ``moment.events`` (topic): Moment publishes here, and so do we.
- ``<prefix>.exports`` (quorum) bound to the incoming types; a delivery limit dead-letters a
  message that keeps crashing consumers, so it can never loop.
- ``<prefix>.retry.<n>s`` (quorum): one wait queue per ladder step, message TTL, dead-lettered
  back to the exports queue through the default exchange.
- ``<prefix>.dead`` (quorum): failed for good, with our headers.
- ``<prefix>.dead.archived`` (quorum): dead letters a person archived with a reason (the
  console's *Archive*): kept and counted, out of the active list and of every replay, and
  brought back to ``<prefix>.dead`` on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractQueue, ExchangeType

from worker.config.settings import Settings
from worker.events.models import INCOMING
from worker.messaging.connection import connect

# Deliveries without an outcome (consumer crashed, connection lost, shutdown requeue) before
# the broker itself dead-letters the message. Our own ladder counts real failures separately.
DELIVERY_LIMIT = 10


def _delay_name(delay: float) -> str:
    return f"{int(delay)}s" if float(delay).is_integer() else f"{int(delay * 1000)}ms"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Topology:
    exchange: str
    exports: QueueSpec
    retries: tuple[tuple[float, QueueSpec], ...]
    dead: QueueSpec
    bindings: tuple[str, ...]
    archived: QueueSpec

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        exports = settings.queue("exports")
        dead = settings.queue("dead")
        quorum = {"x-queue-type": "quorum"}
        to_dead = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
            # at-least-once dead-lettering: the broker keeps the message until the dead-letter
            # queue confirmed it (needs reject-publish overflow).
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        retries = tuple(
            (
                delay,
                QueueSpec(
                    settings.queue(f"retry.{_delay_name(delay)}"),
                    {
                        **quorum,
                        "x-message-ttl": int(delay * 1000),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": exports,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                ),
            )
            for delay in sorted(set(settings.retry_delays))
        )
        return cls(
            exchange=settings.exchange,
            exports=QueueSpec(exports, {**quorum, **to_dead, "x-delivery-limit": DELIVERY_LIMIT}),
            retries=retries,
            dead=QueueSpec(dead, dict(quorum)),
            bindings=tuple(INCOMING),
            archived=QueueSpec(settings.queue("dead.archived"), dict(quorum)),
        )

    @property
    def queues(self) -> list[QueueSpec]:
        return [self.exports, *(q for _, q in self.retries), self.dead, self.archived]

    def retry_queue(self, delay: float) -> str:
        """The wait queue of the smallest ladder step of at least ``delay`` seconds."""
        for step, spec in self.retries:
            if step >= delay:
                return spec.name
        return self.retries[-1][1].name

    def delay_of(self, queue: str) -> float:
        return next(step for step, spec in self.retries if spec.name == queue)

    async def apply(self, channel: AbstractChannel) -> dict[str, AbstractQueue]:
        """Declare everything; safe to run any number of times, from any number of workers.

        Returns the declared queues by name. On a robust channel they are re-declared (and
        their consumers restored) after a reconnect, which a ``get_queue`` handle is not.
        """
        exchange = await channel.declare_exchange(self.exchange, ExchangeType.TOPIC, durable=True)
        queues = {
            spec.name: await channel.declare_queue(
                spec.name, durable=True, arguments=spec.arguments
            )
            for spec in self.queues
        }
        for key in self.bindings:
            await queues[self.exports.name].bind(exchange, routing_key=key)
        return queues

    def definitions(self, vhost: str = "/") -> dict[str, Any]:
        """The same topology as a RabbitMQ definitions document (``deploy/rabbitmq``)."""
        return {
            "exchanges": [
                {
                    "name": self.exchange,
                    "vhost": vhost,
                    "type": "topic",
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
            ],
            "queues": [
                {
                    "name": spec.name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": spec.arguments,
                }
                for spec in self.queues
            ],
            "bindings": [
                {
                    "source": self.exchange,
                    "vhost": vhost,
                    "destination": self.exports.name,
                    "destination_type": "queue",
                    "routing_key": key,
                    "arguments": {},
                }
                for key in self.bindings
            ],
        }


async def apply_topology(settings: Settings) -> Topology:
    """Connect, declare, disconnect: the ``bc-sync topology apply`` command."""

    topology = Topology.from_settings(settings)
    connection = await connect(settings)
    async with connection:
        await topology.apply(await connection.channel())
    return topology
