"""TLS for broker connections: every ``aio_pika.connect``/``connect_robust`` the worker makes
passes ``**amqp_tls(settings)``, so an ``amqps://`` broker with a private CA is trusted through
``BC_SYNC_AMQP_CA_FILE`` everywhere (consumer, publisher, topology, dead-letter tools)."""

from __future__ import annotations

import ssl
from typing import Any

from worker.config.settings import Settings


def amqp_tls(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aio-pika: for an ``amqps://`` URL with ``BC_SYNC_AMQP_CA_FILE``,
    an SSL context trusting the system CAs plus that file (hostname checked); otherwise none,
    and aiormq's defaults apply (system CAs for amqps, plain TCP for amqp)."""
    url = settings.amqp_url.get_secret_value()
    if settings.amqp_ca_file is None or not url.startswith("amqps://"):
        return {}
    # The same trust as the BC client's (worker.bc.http.ssl_context), built here because
    # messaging knows nothing of BC (DESIGN §2).
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(settings.amqp_ca_file))
    return {"ssl_context": context}
