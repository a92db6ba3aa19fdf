"""Broker fixtures (a conftest plugin): a real RabbitMQ and per-test isolated settings.

The broker comes from ``AMQP_URL`` when set, else localhost:5672 when it answers, else a
testcontainers RabbitMQ (needs a Docker engine); with none of them the broker tests skip.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.amqp import drop_topology
from tests.support.settings import make_settings
from worker.config.settings import Settings

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


@pytest.fixture
async def settings(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    s = make_settings(tmp_path, amqp_url=amqp_url)
    yield s
    await drop_topology(s)
