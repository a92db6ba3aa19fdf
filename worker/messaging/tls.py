"""TLS for broker connections: every ``aio_pika.connect``/``connect_robust`` the worker makes
passes ``**amqp_tls(settings)``, so an ``amqps://`` broker with a private CA is trusted through
``BC_SYNC_AMQP_CA_FILE`` everywhere (consumer, publisher, topology, dead-letter tools)."""

from __future__ import annotations

from typing import Any

from worker.bc.http import ssl_context
from worker.config.settings import Settings


def amqp_tls(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aio-pika: for an ``amqps://`` URL with ``BC_SYNC_AMQP_CA_FILE``,
    an SSL context trusting the system CAs plus that file (hostname checked); otherwise none,
    and aiormq's defaults apply (system CAs for amqps, plain TCP for amqp)."""
    url = settings.amqp_url.get_secret_value()
    if settings.amqp_ca_file is None or not url.startswith("amqps://"):
        return {}
    return {"ssl_context": ssl_context(settings.amqp_ca_file)}
