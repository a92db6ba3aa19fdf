"""What every sync handler needs: the organization's config, its BC connection, cached company
facts, claims against concurrent work, and where to report outcomes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from worker.bc import BcConnection, BcCredentials, BcError, BcHub
from worker.config.model import IntegrationConfig
from worker.config.settings import Settings
from worker.errors import Transient
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import Model
from worker.runtime import KeyedLocks
from worker.sync.errors import classify
from worker.sync.tracking import Ledger, RecordedConnection, note_exported

log = structlog.get_logger(__name__)

FACTS_TTL_S = 600.0  # company country, currency, payment terms, dimension ids change rarely
# Companies whose facts are held at most (least recently used go first; expired ones go within
# a minute): memory follows the active organizations, not the configured ones.
FACTS_MAX = 2048
CLAIM_TTL_S = 120.0  # longer than any single invoice export; a crashed holder's claim expires


class ConfigSource(Protocol):
    async def config(self, org_id: str) -> IntegrationConfig | None: ...


class Claims(Protocol):
    """Short leases in the shared store, so two workers never export the same invoice at once."""

    async def acquire(self, name: str, owner: str, ttl_s: float) -> bool: ...

    async def release(self, name: str, owner: str) -> None: ...


class OutcomeRecorder(Protocol):
    async def record_success(
        self, org_id: str, object_type: str, ref: str | None = None
    ) -> None: ...


class ExportRecorder(Protocol):
    """Told of every successful export before Moment is (the payment import follows the
    invoices: :class:`worker.sync.payments.PaymentState`)."""

    async def exported(self, org_id: str, data: Model) -> None: ...


Emit = Callable[[str, str, Model, str], Awaitable[None]]


@dataclass(frozen=True)
class CompanyFacts:
    """What the transforms need to know about the BC company."""

    country: str
    local_currency: str
    payment_terms: tuple[tuple[str, str, str], ...]  # (id, code, due-date formula)
    dimension_ids: dict[str, str]  # dimension code → id


class SyncContext:
    """Shared by the handlers of one worker process."""

    def __init__(
        self,
        settings: Settings,
        configs: ConfigSource,
        hub: BcHub,
        *,
        claims: Claims,
        outcomes: OutcomeRecorder | None = None,
        emit: Emit | None = None,
        exports: ExportRecorder | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.configs = configs
        self.hub = hub
        self.claims = claims
        self.outcomes = outcomes
        self.emit = emit
        self.exports = exports
        self.ledger = ledger  # the sync ledger: newest change wins, per-object state
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        # company → (valid until, facts), least recently used first.
        self._facts: OrderedDict[tuple[str, str, str], tuple[float, CompanyFacts]] = OrderedDict()
        self._facts_max = FACTS_MAX
        self._facts_swept_at = time.monotonic()
        # Weak like the claim locks: a lock lives only while a fetch holds or waits for it.
        self._facts_locks: KeyedLocks[tuple[str, str, str]] = KeyedLocks()
        # Weak: a lock lives only while some handler holds or waits for it.
        self._claim_locks: KeyedLocks[str] = KeyedLocks()

    async def enabled(self, org: str, toggle: str) -> IntegrationConfig | Outcome:
        """The organization's config when ``toggle`` (e.g. ``export_invoices``) is on, else the
        skip outcome: no config at all, or that object switched off."""
        config = await self.configs.config(org)
        if config is None:
            return Outcome.skipped("not_configured")
        if not getattr(config, toggle):
            return Outcome.skipped("export_off")
        return config

    def connection(self, config: IntegrationConfig) -> BcConnection:
        # Its write calls become steps in the sync ledger's history of the object.
        return RecordedConnection(self.hub, credentials_of(config, self.settings))

    async def facts(self, bc: BcConnection) -> CompanyFacts:
        """Company facts, cached per company for FACTS_TTL_S (4 reads, run concurrently)."""
        c = bc.credentials
        key = (c.tenant_id.lower(), c.environment, c.company_name)
        cached = self._facts.get(key)
        if cached and cached[0] > time.monotonic():
            self._facts.move_to_end(key)
            return cached[1]
        async with self._facts_locks.for_key(key):
            cached = self._facts.get(key)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            # A TaskGroup cancels the siblings when one call fails, so a rejected credential
            # doesn't leave three more requests running against BC.
            try:
                async with asyncio.TaskGroup() as group:
                    info_task = group.create_task(bc.company_information())
                    setup_task = group.create_task(bc.general_ledger_setup())
                    terms_task = group.create_task(bc.payment_terms())
                    dims_task = group.create_task(bc.dimensions())
            except ExceptionGroup as failed:
                raise failed.exceptions[0] from None
            info, setup = info_task.result(), setup_task.result()
            terms, dims = terms_task.result(), dims_task.result()
            facts = CompanyFacts(
                country=info.country,
                local_currency=setup.local_currency_code or info.currency_code,
                payment_terms=tuple((t.id, t.code, t.due_date_calculation) for t in terms),
                dimension_ids={d.code.upper(): d.id for d in dims},
            )
            self._keep_facts(key, facts)
            return facts

    def _keep_facts(self, key: tuple[str, str, str], facts: CompanyFacts) -> None:
        now = time.monotonic()
        self._facts.pop(key, None)
        self._facts[key] = (now + FACTS_TTL_S, facts)
        if now - self._facts_swept_at >= 60.0:
            # At most once a minute: expired facts would be fetched again anyway.
            self._facts_swept_at = now
            for old in [k for k, (until, _) in self._facts.items() if until <= now]:
                del self._facts[old]
        while len(self._facts) > self._facts_max:
            self._facts.popitem(last=False)

    def forget_facts(self, bc: BcConnection) -> None:
        c = bc.credentials
        self._facts.pop((c.tenant_id.lower(), c.environment, c.company_name), None)

    @asynccontextmanager
    async def claim(self, name: str) -> AsyncIterator[None]:
        """Hold ``name`` exclusively across workers, or raise Transient to retry later.

        Handlers of this process wait for each other (a local lock); another process's claim
        sends the event round the retry ladder. Every holding has its own owner token, so two
        deliveries in one process never both count as "ours".
        """
        async with self._claim_locks.for_key(name):
            owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
            if not await self.claims.acquire(name, owner, CLAIM_TTL_S):
                raise Transient(
                    "BC-BUSY", f"Another worker is exporting {name.split('/', 1)[-1]} right now."
                )
            try:
                yield
            finally:
                try:
                    await self.claims.release(name, owner)
                except Exception:
                    log.warning("sync.claim_release_failed", claim=name)

    async def succeeded(self, event: Event[Any], object_type: str, data: Model, ref: str) -> None:
        """Record the success and tell Moment (``bc.<object>.exported``, deterministic id)."""
        note_exported(data)  # the ledger row's BC id and number
        if self.outcomes is not None:
            await self.outcomes.record_success(event.org, object_type, ref)
        if self.exports is not None:  # durable before the event is acked
            await self.exports.exported(event.org, data)
        if self.emit is not None:
            event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bc-sync:{event.id}:exported"))
            await self.emit(f"bc.{object_type}.exported", event.org, data, event_id)


def credentials_of(config: IntegrationConfig, settings: Settings) -> BcCredentials:
    """The BC credentials of a stored config (its client id, else the setting's)."""
    secret = config.client_secret
    assert secret is not None, "a stored config always has its secret"
    return BcCredentials(
        tenant_id=config.tenant_id,
        client_id=config.effective_client_id(settings),
        client_secret=secret,
        environment=config.environment,
        company_name=config.company_name,
    )


def bc_failure(exc: BcError, subject: str, config: IntegrationConfig) -> Exception:
    """Shorthand for handlers: classify a BC error for this subject and company."""
    return classify(exc, subject=subject, company=config.company_name)
