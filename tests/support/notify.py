"""Notification helpers: an integration config with recipients, and the digest service wired
on a real store with test-sized retry and tick intervals."""

from __future__ import annotations

from typing import Any

from worker.config.model import IntegrationConfig, parse_config
from worker.config.settings import Settings
from worker.notify.mail import Mailer
from worker.notify.service import DigestService, EventPublisher
from worker.notify.store import NotificationRepository
from worker.store import ConfigCache, Leases, Store

CLIENT_SECRET = "cs~Very.Secret_ClientValue-123"


def config(recipients: list[Any], **changes: Any) -> IntegrationConfig:
    data: dict[str, Any] = {
        "tenant_id": "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f",
        "client_secret": CLIENT_SECRET,
        "environment": "Production",
        "company_name": "CRONUS%20Sverige%20AB",
        "export_invoices": True,
        "department_dimension": "AVDELNING",
        "department_source": "department",
        "notification_recipients": recipients,
    }
    data.update(changes)
    return parse_config(data)


def make_service(
    settings: Settings,
    store: Store,
    *,
    publisher: EventPublisher | None = None,
    mailer: Mailer | None = None,
    **kwargs: Any,
) -> DigestService:
    kwargs.setdefault("retry_base_s", 0.01)
    kwargs.setdefault("tick_s", 0.05)
    return DigestService(
        settings,
        NotificationRepository(store),
        ConfigCache(store, ttl=0),
        Leases(store),
        publisher=publisher,
        mailer=mailer,
        **kwargs,
    )
