"""The ``notify`` role: sends each organization's digest of failures and resolutions.

Timing, per organization: the first failure after a quiet period goes out within
``digest_first_delay_s``; later ones are collected until ``digest_window_s`` after the previous
digest, so an outage of a thousand failures makes one mail.

Several replicas: an organization is handled under a lease (``notify:<org>``), and claiming
items into a digest re-checks in one transaction that they are still pending and due.

SMTP or broker outage: the digest is retried with exponential backoff (given up, and logged,
after a day); items that arrive meanwhile wait for the next digest instead of piling up one
digest per window.

Delivery is at least once. A recipient is marked done right after the SMTP server accepted the
mail (or the broker confirmed the Moment event). A crash between the two resends that one
mail on restart, with the same Message-ID and the same event id, so mail clients and Moment can
drop the copy; the other order (mark first) could lose a mail, which is worse for an alert.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from worker import metrics
from worker.config.model import IntegrationConfig
from worker.config.settings import Settings
from worker.events.envelope import build
from worker.notify.digest import DigestContent, compose
from worker.notify.mail import (
    Mailer,
    MailUnavailable,
    build_message,
    digest_message_id,
    mailer_from_settings,
    parse_smtp_url,
)
from worker.notify.store import (
    DigestRow,
    NotificationRepository,
    due_at,
    recipient_key,
    utcnow,
)
from worker.runtime import cancel_and_wait
from worker.store import Leases, Store

log = structlog.get_logger(__name__)

EVENT_TYPE = "bc.integration.failed"
LEASE_TTL_S = 120.0
CONCURRENCY = 4  # organizations handled at once by one process
# A digest whose recipients still miss it after this long is given up (logged), so one
# mailbox that keeps deferring cannot hold back every later digest.
GIVE_UP_AFTER_S = 24 * 3600.0


class EventPublisher(Protocol):
    """What the service needs of :class:`worker.messaging.publisher.Publisher`."""

    async def event(
        self, routing_key: str, body: bytes, *, message_id: str, headers: Any = None
    ) -> None: ...


class ConfigSource(Protocol):
    """What the service needs of :class:`worker.store.config_cache.ConfigCache`."""

    async def config(self, org_id: str) -> IntegrationConfig | None: ...


def recipients_of(config: IntegrationConfig | None) -> list[dict[str, str]]:
    if config is None:
        return []
    return [{"email": e} for e in config.recipient_emails] + [
        {"user_id": u} for u in config.recipient_user_ids
    ]


class DigestService:
    """Sends due digests in a loop; ``run_once()`` is one pass (used by the loop and tests)."""

    name = "notify"

    def __init__(
        self,
        settings: Settings,
        repository: NotificationRepository,
        configs: ConfigSource,
        leases: Leases,
        *,
        publisher: EventPublisher | None = None,
        mailer: Mailer | None = None,
        tick_s: float | None = None,
        retry_base_s: float = 5.0,
        retry_max_s: float = 900.0,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.configs = configs
        self.leases = leases
        self.publisher = publisher
        self.mailer = mailer if mailer is not None else mailer_from_settings(settings)
        self.first_delay_s = settings.digest_first_delay_s
        self.window_s = settings.digest_window_s
        self.tick_s = tick_s if tick_s is not None else _default_tick(settings)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Masked in every mail and event, wherever a failure message might quote them.
        self._own_secrets = _process_secrets(settings)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- Service protocol ----------------------------------------------------------------------

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name="notify-digests")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is None:
            return
        try:
            # Let a send in progress finish (an SMTP timeout is the longest it can take).
            await asyncio.wait_for(asyncio.shield(self._task), 35.0)
        except TimeoutError:
            await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        # Old items and digests are pruned by the retention job (worker/notify/retention.py).
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:
                # The store may be briefly unreachable: nothing is lost, try again next tick.
                log.exception("notify.pass_failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.tick_s)

    # --- one pass ------------------------------------------------------------------------------

    async def run_once(self, now: datetime | None = None) -> int:
        """Send what is due now; returns how many digests were fully delivered."""
        now = now or utcnow()
        orgs = set(await self.repository.orgs_with_unsent(now))
        for org, (oldest, last) in (await self.repository.pending_orgs()).items():
            # One read for every organization; claim() checks again under the lease.
            if due_at(oldest, last, self.first_delay_s, self.window_s) <= now:
                orgs.add(org)
        # A few organizations at once: one slow mail server answer does not hold up the rest.
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(org: str) -> int:
            async with gate:
                if self._stop.is_set() and self._task is not None:
                    return 0
                try:
                    return await self._org(org, now)
                except Exception:
                    log.exception("notify.org_failed", org=org)
                    return 0

        return sum(await asyncio.gather(*(one(org) for org in sorted(orgs))))

    async def _org(self, org: str, now: datetime) -> int:
        lease = f"notify:{org}"
        if not await self.leases.acquire(lease, self.owner, LEASE_TTL_S):
            return 0  # another replica is on it
        try:
            done = 0
            incomplete = False
            for digest in await self.repository.unsent(org):
                if digest.next_attempt_at is not None and digest.next_attempt_at > now:
                    incomplete = True  # backing off
                    continue
                sent = await self._deliver(digest)
                done += sent
                incomplete = incomplete or not sent
            if incomplete:
                # Still retrying an older digest: new items wait and join the next one, so an
                # SMTP outage does not pile up one digest per window.
                return done
            config = await self.configs.config(org)
            digest_id = await self.repository.claim(
                org,
                recipients_of(config),
                first_delay_s=self.first_delay_s,
                window_s=self.window_s,
                now=now,
            )
            claimed = await self.repository.digest(digest_id) if digest_id is not None else None
            if claimed is not None:
                done += await self._deliver(claimed)
            return done
        finally:
            await self.leases.release(lease, self.owner)

    async def _deliver(self, digest: DigestRow) -> int:
        """Send a digest to the recipients who do not have it; 1 when it is now complete."""
        org = digest.org_id
        items = await self.repository.digest_items(digest.id)
        config = await self.configs.config(org)
        secrets = [*self._own_secrets]
        if config is not None and config.client_secret is not None:
            secrets.append(config.client_secret.get_secret_value())
        content = compose(org, items, digest.window_start, digest.window_end, secrets=secrets)
        missing = digest.missing
        if not digest.recipients:
            log.warning("notify.without_recipients", org=org, failures=digest.failures)
        errors: list[str] = []
        emails = [r["email"] for r in missing if r.get("email")]
        users = [r["user_id"] for r in missing if r.get("user_id")]
        if emails:
            errors += await self._mail(digest, content, emails)
        if users:
            errors += await self._events(digest, content, users)
        if errors:
            return await self._failed_attempt(digest, errors)
        final = await self.repository.record_attempt(digest.id, {})
        if final.sent_at is not None:
            log.info(
                "notify.digest_sent",
                org=org,
                digest=digest.id,
                failures=content.failed_total,
                resolved=content.resolved_total,
                recipients=len(digest.recipients),
            )
            return 1
        return 0

    async def _mail(
        self, digest: DigestRow, content: DigestContent, emails: Sequence[str]
    ) -> list[str]:
        everyone = [r["email"] for r in digest.recipients if r.get("email")]
        message = build_message(
            content,
            sender=self.settings.mail_from,
            to=everyone,
            message_id=digest_message_id(
                digest.org_id, digest.id, digest.created_at, self.settings.mail_from
            ),
        )
        try:
            result = await self.mailer.send(message, emails)
        except MailUnavailable as exc:
            metrics.NOTIFICATIONS_SENT.labels(channel="email", result="failed").inc()
            log.warning("notify.mail_not_sent", org=digest.org_id, digest=digest.id, error=str(exc))
            return [str(exc)]
        delivered = {recipient_key({"email": a}): "sent" for a in result.accepted}
        for address, why in result.refused.items():
            # The server will never take this address: skip it, the others still get theirs.
            delivered[recipient_key({"email": address})] = "refused"
            log.warning(
                "notify.mail_recipient_refused", org=digest.org_id, recipient=address, reply=why
            )
        # Recorded at once: the window in which a crash resends an accepted mail stays small.
        await self.repository.record_attempt(digest.id, delivered)
        metrics.NOTIFICATIONS_SENT.labels(channel="email", result="sent").inc(len(result.accepted))
        metrics.NOTIFICATIONS_SENT.labels(channel="email", result="refused").inc(
            len(result.refused)
        )
        return [f"{address}: {why}" for address, why in result.deferred.items()]

    async def _events(
        self, digest: DigestRow, content: DigestContent, users: Sequence[str]
    ) -> list[str]:
        if self.publisher is None:
            return ["no broker connection to notify Moment users"]
        delivered: dict[str, str] = {}
        errors: list[str] = []
        for user in users:
            event_id = str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL,
                    f"bc-sync:digest:{digest.org_id}:{digest.id}:"
                    f"{digest.created_at.isoformat()}:{user}",
                )
            )
            body = build(EVENT_TYPE, digest.org_id, content.event_data(user), id_=event_id)
            try:
                await self.publisher.event(EVENT_TYPE, body, message_id=event_id)
            except Exception as exc:
                metrics.NOTIFICATIONS_SENT.labels(channel="moment", result="failed").inc()
                errors.append(f"publishing the Moment notification failed ({type(exc).__name__})")
                break
            delivered[recipient_key({"user_id": user})] = "sent"
            metrics.NOTIFICATIONS_SENT.labels(channel="moment", result="sent").inc()
        if delivered:
            await self.repository.record_attempt(digest.id, delivered)
        return errors

    async def _failed_attempt(self, digest: DigestRow, errors: list[str]) -> int:
        now = utcnow()
        if (now - digest.created_at).total_seconds() > GIVE_UP_AFTER_S:
            fresh = await self.repository.digest(digest.id) or digest
            gave_up = {recipient_key(r): "gave_up" for r in fresh.missing}
            log.error(
                "notify.digest_given_up", org=digest.org_id, digest=digest.id, missing=len(gave_up)
            )
            await self.repository.record_attempt(digest.id, gave_up, error="; ".join(errors))
            return 1
        delay = min(self.retry_base_s * 2**digest.attempts, self.retry_max_s)
        await self.repository.record_attempt(
            digest.id,
            {},
            error="; ".join(errors),
            retry_at=now + timedelta(seconds=delay),
        )
        log.info("notify.digest_retry_scheduled", org=digest.org_id, digest=digest.id, in_s=delay)
        return 0


def _process_secrets(settings: Settings) -> list[str]:
    out = [s.get_secret_value() for s in (settings.api_token, settings.smtp_url) if s is not None]
    if settings.smtp_url is not None:
        with suppress(ValueError):
            password = parse_smtp_url(settings.smtp_url.get_secret_value()).password
            if password:
                out.append(password)
    return out


def _default_tick(settings: Settings) -> float:
    spans = [s for s in (settings.digest_first_delay_s, settings.digest_window_s) if s > 0]
    return min(5.0, max(0.05, min(spans) / 4)) if spans else 0.05


async def digest_status(
    source: Store | NotificationRepository, org_id: str, settings: Settings | None = None
) -> dict[str, Any]:
    """An organization's pending notifications, when they are due (with ``settings``), and
    how its last digest went: JSON-ready, nothing secret in it."""
    repository = (
        source if isinstance(source, NotificationRepository) else NotificationRepository(source)
    )
    status = await repository.status(org_id)
    oldest = status["pending"]["oldest_at"]
    due: str | None = None
    if oldest is not None and settings is not None:
        last = await repository.last_digest_at(org_id)
        due = due_at(
            datetime.fromisoformat(oldest),
            last,
            settings.digest_first_delay_s,
            settings.digest_window_s,
        ).isoformat()
    status["pending"]["due_at"] = due
    return status
