"""Shared fixtures: a real RabbitMQ broker and per-test isolated settings.

The broker comes from ``AMQP_URL`` when set, else localhost:5672 when it answers, else a
testcontainers RabbitMQ (needs a Docker engine); with none of them the broker tests skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from worker.config.settings import Settings, load_settings

pytest_plugins = ["tests.emulator.fixtures", "tests.db_support"]

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("AMQP_URL")
    if url:
        yield url
        return
    if _answers("127.0.0.1", 5672):
        yield LOCAL_AMQP
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13")
        container.start()
    except Exception as exc:  # ImportError, docker.errors.DockerException
        pytest.skip(f"no broker: AMQP_URL unset, nothing on localhost:5672, no Docker ({exc})")
    try:
        params = container.get_connection_params()
        yield f"amqp://{container.username}:{container.password}@{params.host}:{params.port}/"
    finally:
        container.stop()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated for one test: own queue prefix and exchange, no .env file."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "queue_prefix": f"t-{tag}",
        "exchange": f"t-{tag}.events",
        "retry_delays": (0.2, 0.4),
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bc-sync.db'}",
        "outbox_dir": tmp_path / "outbox",
        "shutdown_grace_s": 5,
        "poll_interval_s": 3600,
        "_env_file": None,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
async def settings(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    s = make_settings(tmp_path, amqp_url=amqp_url)
    yield s
    await drop_topology(s)


async def drop_topology(s: Settings) -> None:
    """Delete every queue and the exchange a test declared."""
    from worker.messaging.topology import Topology

    topo = Topology.from_settings(s)
    connection = await aio_pika.connect(s.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        for spec in topo.queues:
            # quorum queues refuse if_unused/if_empty (stack-notes §3): pass False explicitly
            await channel.queue_delete(spec.name, if_unused=False, if_empty=False)
        await channel.exchange_delete(topo.exchange)
