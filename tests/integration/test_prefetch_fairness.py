"""Fair share of the prefetch (issue #22): one organization's flood of events does not hold the
slots another organization's event needs, and nothing of the flood is lost, doubled or counted
as a failed attempt on the way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import pytest
from prometheus_client import REGISTRY

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.exports import ORG, config_body, open_exports
from tests.support.wait import wait_for
from worker.config.model import parse_config
from worker.config.settings import Settings

CUSTOMER_CREATED = "moment.customer.created"
QUIET = "org-quiet"
FLOOD = 150
PREFETCH = 32  # room for a share (16 with one organization in flight) above the floor of 10


async def publish_all(settings: Settings, bodies: list[bytes], routing_key: str) -> None:
    """Publish in order on one channel, every one confirmed (a bulk action in Moment)."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type="application/cloudevents+json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=routing_key,
                )
                for body in bodies
            )
        )


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.retry_delays(0.5, 1, 2)
@pytest.mark.parametrize("fair_share", [True, False], ids=["fair", "unfair"])
async def test_a_flooding_organization_leaves_room_for_a_quiet_one(
    request: pytest.FixtureRequest,
    amqp_url: str,
    tmp_path: Path,
    emulator: EmulatorHandle,
    fair_share: bool,
) -> None:
    async with open_exports(
        request, amqp_url, tmp_path, emulator, prefetch=PREFETCH, fair_share=fair_share
    ) as exports:
        await exports.runtime.store.configs.put(QUIET, parse_config(config_body(emulator)))
        await exports.listen_exported()
        # BC answering in 30 ms: the flood takes seconds at BC's 5 requests at once.
        await emulator.control.set_limits(latency_ms=30)
        parked_before = counted("bcsync_events_parked_total", type=CUSTOMER_CREATED)
        retried_before = counted(
            "bcsync_events_handled_total", type=CUSTOMER_CREATED, outcome="retried"
        )
        flood_ids = [f"ev-flood-{k}" for k in range(FLOOD)]
        numbers = [f"7{k:04d}" for k in range(FLOOD)]
        await publish_all(
            exports.settings,
            [
                f.body(CUSTOMER_CREATED, {"customer": f.customer(n)}, org=ORG, id_=i)
                for n, i in zip(numbers, flood_ids, strict=True)
            ],
            CUSTOMER_CREATED,
        )
        quiet_id = await exports.send(
            CUSTOMER_CREATED, {"customer": f.customer("69999")}, org=QUIET, id_="ev-quiet"
        )

        assert await exports.done(quiet_id, timeout=60) == ["succeeded"]
        flood_done = sum(exports.tracker.finished(i) for i in flood_ids)
        if fair_share:
            # The flood's excess waits on the ladder, so the quiet event was reached long
            # before the flood was through.
            assert flood_done < FLOOD // 2, flood_done
        else:
            # Before: the flood held every slot and the quiet event waited behind all of it.
            assert flood_done >= FLOOD - PREFETCH, flood_done

        await wait_for(lambda: all(exports.tracker.finished(i) for i in flood_ids), 90)
        await exports.idle()
        # Each event handled once, none retried: a parked message is not a failed attempt.
        assert {i: exports.tracker.outcomes[i] for i in flood_ids} == {
            i: ["succeeded"] for i in flood_ids
        }
        assert (
            counted("bcsync_events_handled_total", type=CUSTOMER_CREATED, outcome="retried")
            == retried_before
        )
        parked = counted("bcsync_events_parked_total", type=CUSTOMER_CREATED) - parked_before
        if fair_share:
            assert parked >= FLOOD - PREFETCH
        else:
            assert parked == 0
        # In BC: every customer of the flood and the quiet one, each exactly once.
        customers = [c["number"] for c in (await exports.company())["customers"]]
        for number in [*numbers, "69999"]:
            assert customers.count(number) == 1, number
        assert await exports.dead_count() == 0
        # Moment hears of each export once.
        exported = await exports.exported(FLOOD + 1, timeout=30)
        assert len(exported) == FLOOD + 1
        assert len({g.json["id"] for g in exported}) == FLOOD + 1
