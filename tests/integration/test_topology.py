"""The topology: declared idempotently on a real broker, and equal to deploy/rabbitmq."""

from __future__ import annotations

import json
from pathlib import Path

import aio_pika
import pytest

from worker.config.settings import Settings, load_settings
from worker.messaging.topology import DELIVERY_LIMIT, Topology

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


def default_topology() -> Topology:
    return Topology.from_settings(
        load_settings(
            _env_file=None,
            queue_prefix="bc-sync",
            exchange="moment.events",
            retry_delays=(10, 60, 600, 3600, 21600),
        )
    )


def test_definitions_file_matches_the_code() -> None:
    assert json.loads(DEFINITIONS.read_text()) == default_topology().definitions(), (
        "regenerate with: bc-sync topology export -o deploy/rabbitmq/definitions.json"
    )


def test_quorum_queues_cannot_loop_or_vanish() -> None:
    topo = default_topology()
    for spec in topo.queues:
        assert spec.arguments["x-queue-type"] == "quorum"
    assert topo.exports.arguments["x-delivery-limit"] == DELIVERY_LIMIT
    assert topo.exports.arguments["x-dead-letter-routing-key"] == topo.dead.name
    for delay, spec in topo.retries:
        assert spec.arguments["x-message-ttl"] == int(delay * 1000)
        assert spec.arguments["x-dead-letter-routing-key"] == topo.exports.name
    assert [d for d, _ in topo.retries] == [10, 60, 600, 3600, 21600]


async def test_apply_is_idempotent_and_equals_the_file_on_the_broker(settings: Settings) -> None:
    """Declaring twice works; re-declaring from the definitions document (same arguments)
    is accepted by the broker, which refuses any inequivalent argument."""
    topo = Topology.from_settings(settings)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await topo.apply(channel)
        await topo.apply(channel)
        for queue in topo.definitions()["queues"]:
            await channel.declare_queue(queue["name"], durable=True, arguments=queue["arguments"])
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            bad = dict(topo.exports.arguments, **{"x-delivery-limit": 99})
            await channel.declare_queue(topo.exports.name, durable=True, arguments=bad)
