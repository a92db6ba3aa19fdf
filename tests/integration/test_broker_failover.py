"""Several broker addresses in ``BC_SYNC_AMQP_URL`` (issue 22): the worker connects to the first
that answers and, when its node goes away, reconnects to another and goes on consuming.

Two "nodes" here are two TCP proxies in front of the one test broker (refusing connections
when down), so the test needs no cluster; ``tests/integration/test_chaos_cluster.py`` does the
same against three real RabbitMQ nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.chaos.proxy import OutageProxy
from tests.support import factories as f
from tests.support.amqp import drop_topology, publish
from tests.support.net import free_port
from tests.support.settings import make_settings
from tests.support.wait import wait_for
from worker.config.settings import SettingsError, load_settings
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.messaging.connection import FailoverConnection, broker_urls, connect, connect_robust
from worker.messaging.consumer import Consumer
from worker.messaging.topology import Topology

CREATED = "moment.customer.created"


def _at(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host))


def test_several_addresses_are_one_setting_and_errors_hide_the_password() -> None:
    s = load_settings(
        _env_file=None, amqp_url=" amqp://u:pw1@a:5672/ , amqp://u:pw1@b:5672/,amqp://u:pw1@c/ "
    )
    assert broker_urls(s) == ("amqp://u:pw1@a:5672/", "amqp://u:pw1@b:5672/", "amqp://u:pw1@c/")
    assert "pw1" not in repr(s)
    with pytest.raises(SettingsError, match=r"BC_SYNC_AMQP_URL: .*address 2 of 2") as bad:
        load_settings(_env_file=None, amqp_url="amqp://u:hunter2@a/,http://u:hunter2@b/")
    assert "hunter2" not in str(bad.value)
    with pytest.raises(SettingsError, match="same scheme") as mixed:
        load_settings(_env_file=None, amqp_url="amqp://u:hunter2@a/,amqps://u:hunter2@b/")
    assert "hunter2" not in str(mixed.value)
    with pytest.raises(SettingsError, match="at least one"):
        load_settings(_env_file=None, amqp_url=" , ")


async def test_first_address_dead_connects_to_the_second(amqp_url: str, tmp_path: Path) -> None:
    dead = _at(amqp_url, free_port())  # nothing listens there
    settings = make_settings(tmp_path, amqp_url=f"{dead},{amqp_url}")
    robust = await connect_robust(settings, name="bc-sync failover test")
    try:
        assert isinstance(robust, FailoverConnection)
        assert robust.address == f"{urlsplit(amqp_url).hostname}:{urlsplit(amqp_url).port or 5672}"
        channel = await robust.channel()
        await Topology.from_settings(settings).apply(channel)  # it really talks to the broker
    finally:
        await robust.close()
    plain = await connect(settings)  # topology apply, dead-letter tools
    async with plain:
        plain_channel = await plain.channel()
        queue = await plain_channel.declare_queue(settings.queue("exports"), passive=True)
        assert queue.declaration_result.message_count == 0
    await drop_topology(make_settings(tmp_path, amqp_url=amqp_url, **_names(settings)))


async def test_no_address_answers_raises_the_connection_error(tmp_path: Path) -> None:
    urls = ",".join(_at("amqp://guest:guest@127.0.0.1/", free_port()) for _ in range(2))
    with pytest.raises(ConnectionError):
        await connect_robust(make_settings(tmp_path, amqp_url=urls), name="nowhere")


def _names(settings: Any) -> dict[str, str]:
    return {"queue_prefix": settings.queue_prefix, "exchange": settings.exchange}


async def test_node_gone_consumer_reconnects_to_another_and_goes_on(
    amqp_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(amqp_url)
    nodes = [OutageProxy(parts.hostname or "127.0.0.1", parts.port or 5672) for _ in range(2)]
    for node in nodes:
        await node.start()
    settings = make_settings(tmp_path, amqp_url=",".join(_at(amqp_url, n.port) for n in nodes))
    direct = make_settings(tmp_path, amqp_url=amqp_url, **_names(settings))
    done: list[str] = []

    async def handler(event: Event[Any]) -> Outcome:
        done.append(event.data.customer.number)
        return Outcome.ok()

    consumer = Consumer(settings, {CREATED: handler})
    await consumer.start()
    try:
        connection = consumer.connection
        assert isinstance(connection, FailoverConnection)
        first = connection.index
        await publish(direct, f.customer_event("1"), CREATED)
        await wait_for(lambda: done == ["1"])
        nodes[first].down()  # its node stops: connections cut, new ones refused
        await publish(direct, f.customer_event("2"), CREATED)
        await wait_for(lambda: "2" in done, timeout=30)
        await wait_for(consumer.broker_consumer_count, timeout=30)
        assert connection.index == 1 - first  # on the other node now
        # Back, and the other one goes: round again to the first.
        nodes[first].up()
        nodes[1 - first].down()
        await publish(direct, f.customer_event("3"), CREATED)
        await wait_for(lambda: "3" in done, timeout=30)
        assert connection.index == first
        assert sorted(set(done)) == ["1", "2", "3"]
    finally:
        await consumer.stop()
        for node in nodes:
            await node.stop()
        await drop_topology(direct)
