"""Broker connections with failover: ``BC_SYNC_AMQP_URL`` may name several nodes of a RabbitMQ
cluster, comma-separated. Every connection the worker makes goes through here, so each one
tries the addresses in turn and passes the TLS options (worker.messaging.tls).

- :func:`connect_robust`: the long-lived connection (runtime, consumer, sampler). The first
  connect tries each address in order; once connected, every reconnect attempt goes to the
  next address (wrapping), so a stopped node is left for a live one instead of being retried
  while the others are up.
- :func:`connect`: a short plain connection (``topology apply``, dead-letter tools), to the
  first address that answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_connection import RobustConnection
from aiormq.exceptions import ProbableAuthenticationError
from yarl import URL

from worker.config.settings import Settings
from worker.messaging.tls import amqp_tls

log = structlog.get_logger(__name__)

# aio-pika's reconnect loop makes each attempt through this (name-mangled) method; overriding
# it is the one place that sees every attempt. Checked at import so an aio-pika upgrade that
# renames it fails loudly instead of silently never rotating.
_ATTEMPT = "_RobustConnection__connect_transport"
if not hasattr(RobustConnection, _ATTEMPT):  # pragma: no cover - only after an upgrade
    raise ImportError(f"aio-pika's RobustConnection has no {_ATTEMPT}: failover cannot rotate")


def broker_urls(settings: Settings) -> tuple[str, ...]:
    """The broker addresses of ``BC_SYNC_AMQP_URL``, in their order (validated by settings)."""
    return tuple(u for u in settings.amqp_url.get_secret_value().split(",") if u)


def safe_address(url: str | URL) -> str:
    """``host:port`` of an address, for logs (never the credentials)."""
    parsed = URL(url) if isinstance(url, str) else url
    port = parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    return f"{parsed.host}:{port}"


class FailoverConnection(RobustConnection):
    """A robust connection over several addresses: each reconnect attempt goes to the next."""

    def __init__(self, urls: Sequence[str], start: int = 0, **kwargs: Any) -> None:
        self.urls = tuple(URL(u) for u in urls)
        self.index = start % len(self.urls)
        self.attempts = 0
        super().__init__(self.urls[self.index], **kwargs)

    @property
    def address(self) -> str:
        """``host:port`` of the node in use (or being tried)."""
        return safe_address(self.url)

    async def _RobustConnection__connect_transport(self) -> None:
        if self.attempts:
            self.index = (self.index + 1) % len(self.urls)
            # The password may have been changed by update_secret since: keep the current one.
            url = self.urls[self.index]
            self.url = url.with_password(self.url.password) if self.url.password else url
        self.attempts += 1
        if self.attempts > 1:
            log.info("messaging.broker_trying", address=self.address, attempt=self.attempts)
        await getattr(super(), _ATTEMPT)()


async def connect_robust(
    settings: Settings,
    *,
    name: str,
    reconnect_interval: float = 2.0,
) -> AbstractRobustConnection:
    """The robust connection, to the first address that answers (in order); raises the last
    error when none does. Wrong credentials stop at once: every node has the same users."""
    urls = broker_urls(settings)
    last: BaseException | None = None
    for start in range(len(urls)):
        connection = FailoverConnection(
            urls,
            start,
            **amqp_tls(settings),
            client_properties={"connection_name": name},
            reconnect_interval=reconnect_interval,
        )
        try:
            await connection.connect()
        except ProbableAuthenticationError:
            await _close_quietly(connection)
            raise
        except CONNECTION_EXCEPTIONS as exc:  # TimeoutError is an OSError
            await _close_quietly(connection)
            last = exc
            if start + 1 < len(urls):
                log.warning(
                    "messaging.broker_unreachable",
                    address=safe_address(urls[start]),
                    error=type(exc).__name__,
                    next=safe_address(urls[start + 1]),
                )
            continue
        return connection
    assert last is not None
    raise last


async def connect(settings: Settings, *, name: str | None = None) -> AbstractConnection:
    """A plain (not robust) connection to the first address that answers, in order."""
    extra: dict[str, Any] = {}
    if name is not None:
        extra["client_properties"] = {"connection_name": name}
    urls = broker_urls(settings)
    for n, url in enumerate(urls, 1):
        try:
            opened: AbstractConnection = await aio_pika.connect(url, **amqp_tls(settings), **extra)
            return opened
        except ProbableAuthenticationError:
            raise
        except CONNECTION_EXCEPTIONS:
            if n == len(urls):
                raise
            log.warning("messaging.broker_unreachable", address=safe_address(url))
    raise AssertionError("no broker address")  # settings guarantee at least one


async def _close_quietly(connection: AbstractConnection) -> None:
    try:
        await connection.close()
    except Exception as exc:  # a connection that never opened may fail to close: no matter
        log.debug("messaging.close_failed", error=type(exc).__name__)
