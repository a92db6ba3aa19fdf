"""The poll role (``bc-sync run --roles poll``) and one-shot rounds for the CLI.

:class:`Poller` is the machinery every import shares; :class:`ExpensePoller` (here) and
:class:`worker.sync.payments.PaymentPoller` are its two parts. Every interval
(``BC_SYNC_POLL_INTERVAL_S`` for expenses) a part polls each organization whose import is on.
Each organization has its own phase in the interval, so the rounds are spread evenly over it
(no thundering herd at start, nor after an outage: see :func:`phases`). A lease
``{part}:{org}`` in the store (``poll:{org}`` for expenses) makes sure one replica polls an
organization at a time; it is renewed while polling and expires when its holder dies. The
config is read from the store every round, so a save takes effect at the next poll without a
restart.

Failures: throttling, outages and malformed answers are logged and retried later with a
per-organization backoff. Rejected credentials and config that no longer matches BC (company,
environment or project dimension gone, import settings incomplete) pause the organization until
its config is saved again, and are reported to the observers (notifications, status) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self

import structlog

from worker import tracing
from worker.bc import BcError
from worker.config.model import ConfigValidationError
from worker.config.settings import Settings
from worker.events.handlers import FailureReport, Observer
from worker.metrics import EXPENSES_PUBLISHED, POLLER_LAG
from worker.store import Leases, Store, StoredConfig, utcnow
from worker.sync.context import SyncContext
from worker.sync.errors import classify
from worker.sync.expenses import (
    CHECK_BATCH,
    CHECK_REQUESTS,
    EVENT_TYPE,
    OBJECT_TYPE,
    EventSink,
    ExpenseState,
    PollResult,
    PollState,
    PollStates,
    poll_org,
)
from worker.sync.status import StatusObserver

log = structlog.get_logger(__name__)

LEASE_TTL_S = 120.0  # a crashed holder blocks its organizations this long at most
LEASE_RENEW_S = 30.0
JITTER = 0.2  # an organization enabled while running: first poll within JITTER * MAX_SLEEP_S
MAX_BACKOFF_S = 3600.0
MAX_SLEEP_S = 30.0  # the loop wakes at least this often to notice new organizations
CONCURRENCY = 4  # organizations polled at once by one process
# How long the list of organizations with the import on is reused by the loop: with hundreds of
# organizations spread over the interval the loop wakes every second or so, and the list is a
# scan of every configured organization.
LIST_REUSE_S = 5.0
# Invoices per BC page: each page's ids are stored once confirmed, so a round cut short keeps
# what it sent, and a page's publishes stay a bounded batch.
PAGE_SIZE = 200

# Codes that need a person: polling that organization stops until its config is saved again.
PAUSE_CODES = frozenset(
    {
        "BC-CREDENTIALS-REJECTED",
        "BC-ENVIRONMENT-MISSING",
        "BC-COMPANY-MISSING",
        "BC-DIMENSION-MISSING",
        "CONFIG-EXPENSES-INCOMPLETE",
    }
)


class LeaseLost(Exception):
    """Another replica took over the organization's lease (ours expired): stop this round."""


class PollFailure(Exception):
    """A round failed with a catalogue code; ``pause`` when a person must act first."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        pause: bool,
        retry_after: float | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.pause = pause
        self.retry_after = retry_after
        self.correlation_id = correlation_id


class PollerDeps(Protocol):
    """What the poller takes from the process runtime (``worker.app.Runtime`` has it all)."""

    settings: Settings
    store: Store
    leases: Leases
    observers: list[Observer]

    @property
    def publisher(self) -> EventSink: ...

    def sync_context(self) -> SyncContext: ...


@dataclass
class _Schedule:
    due: float  # monotonic time of the next poll
    failures: int = 0


class Poller:
    """One part of the ``poll`` role: :meth:`start` / :meth:`stop` like every service;
    :meth:`run_round` polls now (the CLI's ``poll --once``). A part sets the class attributes
    and :meth:`_poll_leased` (one organization's round, under its lease)."""

    name = "poll"
    part: ClassVar[str]  # log names and the task: "expense" → expense_poll_failed
    toggle: ClassVar[str]  # the config toggle (and store column) that switches the import on
    lease_prefix: ClassVar[str]  # the lease of an organization is "{lease_prefix}:{org}"
    subject: ClassVar[str]  # what BC errors are about ("expenses")
    event_type: ClassVar[str]
    object_type: ClassVar[str]  # sync outcomes and failure reports
    pause_codes: ClassVar[frozenset[str]]  # codes that need a person: pause until a save
    interval_setting: ClassVar[str]  # the Settings field of the default interval
    lag_gauge: ClassVar[Any]  # seconds since the last successful poll, per organization
    state_type: ClassVar[type[PollStates]]
    result_type: ClassVar[type[PollResult]] = PollResult  # what a round answers

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        ctx: SyncContext,
        sink: EventSink,
        leases: Leases,
        observers: Sequence[Observer] = (),
        interval_s: float | None = None,
        page_size: int | None = PAGE_SIZE,
        lease_ttl_s: float = LEASE_TTL_S,
        lease_renew_s: float = LEASE_RENEW_S,
        owner: str | None = None,
        check_requests: int = CHECK_REQUESTS,
        check_batch: int = CHECK_BATCH,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ctx = ctx
        self.sink = sink
        self.leases = leases
        self.observers = list(observers)
        self.interval_s = (
            interval_s if interval_s is not None else getattr(settings, self.interval_setting)
        )
        self.page_size = page_size
        self.lease_ttl_s = lease_ttl_s
        self.lease_renew_s = lease_renew_s
        self.owner = owner or f"poller-{uuid.uuid4().hex[:12]}"
        # The expense part's re-check of imported invoices for cancellations: BC requests per
        # organization per round, invoices per request (worker/sync/expenses.py).
        self.check_requests = check_requests
        self.check_batch = check_batch
        self.state = self.state_type(store)
        # Per organization with the import on (pruned when it is switched off): bounded by the
        # polled set, not by the configured one.
        self._schedule: dict[str, _Schedule] = {}
        self._phases: dict[str, float] = {}  # seconds into the interval (see phases())
        self._enabled: list[str] = []
        self._listed_at = -math.inf
        self._started = False  # the first round of the process spreads every organization
        self._busy: set[str] = set()  # leases are re-entrant per owner: guard in process too
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_runtime(cls, deps: PollerDeps, **options: object) -> Self:
        """The poller of a process: its store, BC hub, publisher and observers (the status
        table first, like the consumer's)."""
        return cls(
            settings=deps.settings,
            store=deps.store,
            ctx=deps.sync_context(),
            sink=deps.publisher,
            leases=deps.leases,
            observers=[StatusObserver(deps.store), *deps.observers],
            **options,  # type: ignore[arg-type]
        )

    # -- service ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name=f"{self.part}-poller")

    async def stop(self) -> None:
        """Let the organizations being polled finish (up to the shutdown grace), start no new
        ones. A round cut off re-sends at most what it published unrecorded, with the same ids."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, self.settings.shutdown_grace_s)
            self._task = None

    async def _loop(self) -> None:
        while not self._stop.is_set():
            pause = None
            try:
                await self.run_round(due_only=True)
            except Exception:  # the store itself failing: not in a tight loop
                log.exception("poller.round_failed", part=self.part)
                pause = min(self.interval_s, MAX_SLEEP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause or self._sleep_s())

    def _sleep_s(self) -> float:
        now = time.monotonic()
        nearest = min((s.due for s in self._schedule.values()), default=now + MAX_SLEEP_S)
        return max(0.05, min(MAX_SLEEP_S, self.interval_s, nearest - now))

    def _next(self, org: str, *, failed: bool = False, retry_after: float | None = None) -> None:
        """The organization's next poll: its next slot in the interval at least half an
        interval (after a failure: the backoff) from now."""
        sched = self._schedule.setdefault(org, _Schedule(0.0))
        sched.failures = sched.failures + 1 if failed else 0
        wait = self.interval_s / 2
        if failed:
            wait = min(MAX_BACKOFF_S, self.interval_s * 2 ** (sched.failures - 1))
            wait = max(wait, retry_after or 0.0)
        sched.due = self._slot(org, time.monotonic() + wait)

    def _slot(self, org: str, earliest: float) -> float:
        """The first time (monotonic) at or after ``earliest`` on the organization's phase.

        Slots are on the wall clock (``phase + k * interval`` seconds since the epoch), so every
        replica and a restarted process keep the same spread; a round that ran late (an
        outage, a slow BC) does not drag the organization's later rounds with it.
        """
        phase = self._phases.get(org)
        if phase is None:
            phase = phases([org], self.interval_s)[org]
        mono, wall = time.monotonic(), time.time()
        at = earliest - mono + wall
        k = math.ceil((at - phase) / self.interval_s)
        return (k * self.interval_s + phase) - wall + mono

    # -- rounds -------------------------------------------------------------------------------

    async def run_round(
        self, orgs: Sequence[str] | None = None, *, due_only: bool = False, force: bool = False
    ) -> list[PollResult]:
        """Poll ``orgs`` (default: every organization with import on); ``due_only`` skips those
        whose time has not come, ``force`` polls paused ones too (an operator asks)."""
        enabled = await self._enabled_orgs(reuse=due_only)
        targets = list(orgs) if orgs is not None else enabled
        if due_only:
            now = time.monotonic()
            for org in targets:
                if org in self._schedule:
                    continue
                if self._started:  # switched on while we run: poll it soon
                    due = now + random.uniform(0, JITTER) * min(self.interval_s, MAX_SLEEP_S)
                else:  # the process starts: each organization at its slot in the interval
                    due = self._slot(org, now)
                self._schedule[org] = _Schedule(due)
            self._started = True
            targets = [o for o in targets if self._schedule[o].due <= now]
        random.shuffle(targets)  # replicas meet at different organizations first
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(org: str) -> PollResult:
            async with gate:
                if self._stop.is_set():
                    return self.result_type(org, status="skipped", reason="stopping")
                return await self.poll(org, force=force)

        results = await asyncio.gather(*(one(org) for org in targets))
        return sorted(results, key=lambda r: r.org)

    async def _enabled_orgs(self, *, reuse: bool) -> list[str]:
        """The organizations with the import on (the loop reuses the list for LIST_REUSE_S)."""
        now = time.monotonic()
        if reuse and now - self._listed_at < min(LIST_REUSE_S, self.interval_s):
            return self._enabled
        enabled = await self.store.configs.list_orgs(**{self.toggle: True})
        self._listed_at = now
        if enabled != self._enabled:
            self._forget_disabled(enabled)
            self._phases = phases(enabled, self.interval_s)
            self._enabled = enabled
        return enabled

    def _forget_disabled(self, enabled: Sequence[str]) -> None:
        on = set(enabled)
        for org in [o for o in self._schedule if o not in on]:
            del self._schedule[org]
            with contextlib.suppress(KeyError):
                self.lag_gauge.remove(org)

    async def poll(self, org: str, *, force: bool = False) -> PollResult:
        """One round for one organization; never raises for BC or config trouble."""
        try:
            stored = await self.store.configs.get(org)
        except Exception as exc:
            log.error("poller.config_unreadable", part=self.part, org=org, error=str(exc))
            self._next(org, failed=True)
            return self.result_type(
                org, status="failed", reason="CONFIG-UNREADABLE", message=str(exc)
            )
        if stored is None:
            return self.result_type(org, status="skipped", reason="not_configured")
        if not getattr(stored.config, self.toggle):
            return self.result_type(org, status="skipped", reason="import_off")
        state = await self.state.get(org)
        if state is not None and state.paused_for(stored.version) and not force:
            self._set_lag(org, state)
            self._next(org)
            return self.result_type(
                org, status="paused", reason=state.last_error_code, message=state.last_error_message
            )
        if org in self._busy:
            return self.result_type(org, status="skipped", reason="polled_elsewhere")
        self._busy.add(org)
        try:
            # The round's BC requests are its children; bc.expense.imported events carry it.
            with tracing.span(
                "poll expenses",
                attributes={"bc_sync.organization": org} if tracing.enabled() else None,
            ) as span:
                result = await self._poll_configured(org, stored)
                if span.is_recording():
                    span.set_attribute("bc_sync.outcome", result.status)
                    if result.status == "failed":
                        tracing.fail(span, result.reason or "failed")
                return result
        finally:
            self._busy.discard(org)

    async def _poll_configured(self, org: str, stored: StoredConfig) -> PollResult:
        try:
            async with self._lease(org) as keep_alive:
                if keep_alive is None:
                    return self.result_type(org, status="skipped", reason="polled_elsewhere")
                result = await self._leased(org, stored, keep_alive)
        except PollFailure as failure:
            result = await self._failed(org, stored, failure)
        except LeaseLost:
            log.warning("poller.lease_lost", part=self.part, org=org)
            result = self.result_type(org, status="skipped", reason="lease_lost")
            self._next(org)
        except Exception as exc:  # store or broker trouble: the round is simply retried
            log.exception("poller.failed", part=self.part, org=org)
            result = await self._failed(
                org, stored, PollFailure("INTERNAL-ERROR", _describe(exc), pause=False)
            )
        else:
            self._next(org)
            with contextlib.suppress(Exception):  # status only; the round itself is done
                await self.store.record_success(
                    org, self.object_type, f"{result.published} published"
                )
        with contextlib.suppress(Exception):
            self._set_lag(org, await self.state.get(org))
        return result

    async def _poll_leased(
        self, org: str, stored: StoredConfig, keep_alive: _KeepAlive
    ) -> PollResult:
        """One organization's round while its lease is held (the part's own work)."""
        raise NotImplementedError

    async def _leased(self, org: str, stored: StoredConfig, keep_alive: _KeepAlive) -> PollResult:
        """:meth:`_poll_leased`, its BC and credential errors as the failures to record."""
        try:
            return await self._poll_leased(org, stored, keep_alive)
        except BcError as exc:
            raise self._bc_failure(exc, stored.config.company_name) from exc
        except ConfigValidationError as exc:  # e.g. no client id anywhere
            raise PollFailure("BC-CREDENTIALS-REJECTED", str(exc), pause=True) from exc

    def _bc_failure(self, exc: BcError, company: str) -> PollFailure:
        """A BC error of a round as the failure the poller records (pause or retry)."""
        failure = classify(exc, subject=self.subject, company=company)
        return PollFailure(
            failure.code,
            failure.message,
            pause=failure.code in self.pause_codes,
            retry_after=getattr(failure, "retry_after", None),
            correlation_id=exc.correlation_id,
        )

    async def _failed(self, org: str, stored: StoredConfig, failure: PollFailure) -> PollResult:
        log.warning(
            "poller.failed" if not failure.pause else "poller.paused",
            part=self.part,
            org=org,
            code=failure.code,
            error=failure.message,
            correlation_id=failure.correlation_id,
        )
        try:
            await self.state.record_error(
                org,
                failure.code,
                failure.message,
                pause_version=stored.version if failure.pause else None,
            )
        except Exception:
            log.exception("poller.state_unwritable", part=self.part, org=org)
        if failure.pause:
            self._next(org)
            await self._report(org, failure)
        else:
            self._next(org, failed=True, retry_after=failure.retry_after)
        return self.result_type(
            org,
            status="paused" if failure.pause else "failed",
            reason=failure.code,
            message=failure.message,
        )

    async def _report(self, org: str, failure: PollFailure) -> None:
        report = FailureReport(
            org=org,
            event_id=None,
            event_type=self.event_type,
            object_type=self.object_type,
            moment_id=None,
            moment_number=None,
            code=failure.code,
            message=failure.message,
            attempts=1,
            final=True,
            notify_now=True,
        )
        for observer in self.observers:
            try:
                await observer.on_failure(report)
            except Exception:
                log.exception("poller.observer_failed", org=org, observer=type(observer).__name__)

    def _set_lag(self, org: str, state: PollState | None) -> None:
        lag = lag_seconds(state) if state is not None else None
        if lag is not None:
            self.lag_gauge.labels(org).set(lag)

    @asynccontextmanager
    async def _lease(self, org: str) -> AsyncIterator[_KeepAlive | None]:
        """Hold ``{lease_prefix}:{org}`` (renewed in the background), or yield ``None`` when
        another replica holds it."""
        name = f"{self.lease_prefix}:{org}"
        if not await self.leases.acquire(name, self.owner, self.lease_ttl_s):
            yield None
            return
        keep = _KeepAlive(self.leases, name, self.owner, self.lease_ttl_s)
        renewer = asyncio.create_task(keep.renew_every(self.lease_renew_s))
        try:
            yield keep
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            try:
                await self.leases.release(name, self.owner)
            except Exception:
                log.warning("poller.lease_release_failed", lease=name)


class ExpensePoller(Poller):
    """The expense import (DESIGN §7): ``bc.expense.imported`` per posted purchase-invoice
    line on a project."""

    part = "expense"
    toggle = "import_expenses"
    lease_prefix = "poll"
    subject = "expenses"
    event_type = EVENT_TYPE
    object_type = OBJECT_TYPE
    pause_codes = PAUSE_CODES
    interval_setting = "poll_interval_s"
    lag_gauge = POLLER_LAG
    state_type = ExpenseState
    state: ExpenseState

    async def _poll_leased(
        self, org: str, stored: StoredConfig, keep_alive: _KeepAlive
    ) -> PollResult:
        config = stored.config
        missing = [
            label
            for label, value in (
                ("Project dimension", config.project_dimension),
                ("From date", config.expenses_from_date),
            )
            if not value
        ]
        if missing:
            raise PollFailure(
                "CONFIG-EXPENSES-INCOMPLETE",
                f"{' and '.join(missing)} must be set to import expenses: expenses are the "
                "purchase invoice lines posted on the project dimension since the from date.",
                pause=True,
            )
        assert config.project_dimension is not None
        try:
            bc = self.ctx.connection(config)
            facts = await self.ctx.facts(bc)
            if config.project_dimension.upper() not in facts.dimension_ids:
                self.ctx.forget_facts(bc)  # cached for minutes: make sure before pausing
                facts = await self.ctx.facts(bc)
            if config.project_dimension.upper() not in facts.dimension_ids:
                raise PollFailure(
                    "BC-DIMENSION-MISSING",
                    f"The project dimension '{config.project_dimension}' does not exist in "
                    f"company '{config.company_name}'.",
                    pause=True,
                )
            return await poll_org(
                org,
                config,
                bc,
                local_currency=facts.local_currency,
                state=self.state,
                sink=self.sink,
                page_size=self.page_size,
                keep_alive=keep_alive.check,
                on_published=EXPENSES_PUBLISHED.inc,
                check_requests=self.check_requests,
                check_batch=self.check_batch,
            )
        except BcError as exc:
            raise self._bc_failure(exc, config.company_name) from exc
        except ConfigValidationError as exc:  # e.g. no client id anywhere
            raise PollFailure("BC-CREDENTIALS-REJECTED", str(exc), pause=True) from exc


class _KeepAlive:
    """Renews a lease in the background; :meth:`check` raises once it was lost."""

    def __init__(self, leases: Leases, name: str, owner: str, ttl_s: float) -> None:
        self.leases = leases
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s
        self.lost = False

    async def renew_every(self, every_s: float) -> None:
        while not self.lost:
            await asyncio.sleep(every_s)
            try:
                self.lost = not await self.leases.renew(self.name, self.owner, self.ttl_s)
            except Exception:  # the store hiccupped: the lease lasts ttl, try again
                log.warning("poller.lease_renew_failed", lease=self.name)

    async def check(self) -> None:
        if self.lost:
            raise LeaseLost(self.name)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def phases(orgs: Sequence[str], interval_s: float) -> dict[str, float]:
    """Each organization's offset (seconds) into the poll interval: evenly spaced, in the
    order of a hash of the organization id.

    Evenly by rank rather than the hash itself: with a few hundred organizations a hash alone
    leaves gaps and clumps of several percent of the interval. Hash order, not the ids' order,
    so that an organization switched on or off moves the others by about interval / n at
    most. Deterministic: every replica computes the same offsets.
    """
    ordered = sorted(orgs, key=lambda org: hashlib.blake2b(org.encode(), digest_size=8).digest())
    count = max(1, len(ordered))
    return {org: rank * interval_s / count for rank, org in enumerate(ordered)}


async def poll_once(
    deps: PollerDeps,
    org: str | None = None,
    *,
    page_size: int | None = None,
    part: type[Poller] = ExpensePoller,
) -> list[PollResult]:
    """One round now, as ``bc-sync poll --once [--payments] [--org ID]`` runs it: every
    organization with that import on, or just ``org`` (then even when paused: an operator
    asked)."""
    options: dict[str, Any] = {"page_size": page_size} if page_size else {}
    poller = part.from_runtime(deps, **options)
    return await poller.run_round([org] if org else None, force=org is not None)


def lag_seconds(state: PollState, now: datetime | None = None) -> float | None:
    """Seconds since the organization's last successful poll (what the lag gauge shows)."""
    if state.last_success_at is None:
        return None
    return max(0.0, ((now or utcnow()) - state.last_success_at).total_seconds())
