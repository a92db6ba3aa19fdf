"""``bc-sync run`` in the test's process: the roles built as the worker builds them, started
in order and stopped in reverse, also when a start fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from worker.app import build_services
from worker.config.settings import Settings
from worker.runtime import Service


@asynccontextmanager
async def running(settings: Settings, roles: list[str]) -> AsyncIterator[list[Service]]:
    """The started services of ``roles`` (``consume``, ``poll``, ``api``, ``notify``, …)."""
    services: list[Service] = await build_services(settings, roles)
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        yield services
    finally:
        for service in reversed(started):
            await service.stop()
