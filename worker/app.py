"""Wiring: build the roles of ``bc-sync run`` from settings."""

from __future__ import annotations

from collections.abc import Sequence

from worker.config.settings import Settings
from worker.events.handlers import Registry
from worker.messaging.consumer import Consumer
from worker.runtime import Service


async def build_services(settings: Settings, roles: Sequence[str]) -> list[Service]:
    registry: Registry = {}
    services: list[Service] = []
    if "consume" in roles:
        services.append(Consumer(settings, registry))
    return services
