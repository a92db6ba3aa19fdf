"""Writing the sync ledger from the hot path (see :mod:`worker.sync.ledger` for the rules).

- :meth:`Ledger.guard` wraps every export handler: claim the object, drop a superseded change,
  run the handler, mark the outcome (``succeeded`` → ``synced``, ``skipped`` → ``skipped``,
  any ``waiting`` kind → ``waiting``) and release, in two statements per event.
- :class:`LedgerObserver` (a consumer observer) records retries and dead letters once the
  consumer made them durable.
- :class:`StepBuffer` batches the history (like the success buffer): steps reach the store
  once per second in one transaction; a crash loses at most that second of history, never a
  state.
- :class:`RecordedConnection` writes each BC write call of a handler as a step.
- ``bc.sync.status`` goes to Moment when an object's state changes to ``failed`` or
  ``waiting``, or back to ``synced`` after one of them: once per change (the row remembers
  what Moment was last told), confirmed by the broker.
"""

from __future__ import annotations

import asyncio
import time as _time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import structlog

from worker import metrics
from worker.bc.client import BcConnection
from worker.bc.errors import BcError
from worker.config.model import IntegrationConfig
from worker.errors import HandlerError, Permanent, Transient
from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Handler, Observer, Outcome, subject_of
from worker.events.models import CreditNoteExportedData, ExportedData, Model, SyncStatusData
from worker.runtime import FlushEvery, KeyedLocks
from worker.sync.ledger import (
    DETAIL_MAX,
    Applied,
    LedgerRepository,
    clean,
    document_facts,
    event_key,
    event_sequence,
)

log = structlog.get_logger(__name__)

# What a handler reports it wrote to BC (``bc.<object>.exported``'s data).
Exported = ExportedData | CreditNoteExportedData

STEPS_FLUSH_S = 1.0
STEPS_BUFFER_MAX = 20_000  # a store outage keeps at most this many steps in memory
CLAIM_TTL_S = 120.0  # as the invoice claim: longer than any single export
STATUS_EVENT = "bc.sync.status"
# Outcome kind → ledger state; kinds not listed (superseded) leave the state alone.
STATE_OF_KIND = {"succeeded": "synced", "skipped": "skipped", "waiting": "waiting"}

T = TypeVar("T")
StatusEmit = Callable[[str, str, Model, str], Awaitable[None]]


class ConfigSource(Protocol):
    async def config(self, org_id: str) -> IntegrationConfig | None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- the event being handled -------------------------------------------------------------------


@dataclass
class Ticket:
    """The object and change a handler is working on (a context variable while it runs)."""

    ledger: Ledger
    org: str
    object_type: str
    moment_id: str
    event_id: str
    attempt: int
    key: str
    time: datetime | None
    sequence: str | None
    number: str | None = None  # the Moment number
    exported: Exported | None = None
    # The claims this handler holds (its object's, and an embedded snapshot's while it is
    # written): (org, object type, Moment id), owner, and when each was taken or extended.
    holds: list[Hold] = field(default_factory=list)

    async def fence(self) -> None:
        """Before a BC write: each claim past half its time is extended first, so a handler
        that stalled (a slow BC, a broker failover) never writes over a newer change that
        claimed the object after its claim ran out. Raises ``BC-BUSY`` when one was lost."""
        ttl = self.ledger.claim_ttl_s
        for hold in self.holds:
            if _time.monotonic() - hold.since < ttl / 2:
                continue
            org, object_type, moment_id = hold.where
            kept = await self.ledger.repo.extend(
                org, object_type, moment_id, owner=hold.owner, ttl_s=ttl, now=self.ledger.now()
            )
            if not kept:
                log.warning("ledger.claim_lost", object_type=object_type, moment_id=moment_id)
                name = self.number if moment_id == self.moment_id else None
                raise Transient(
                    "BC-BUSY",
                    f"Another worker took over {object_type} {name or moment_id} while "
                    "this change waited; it is tried again.",
                )
            hold.since = _time.monotonic()

    def step(self, step: str, **kw: Any) -> None:
        self.ledger.steps.add(
            self.org, self.object_type, self.moment_id, step, event_id=self.event_id, **kw
        )


@dataclass
class Hold:
    """A ledger claim a handler holds."""

    where: tuple[str, str, str]
    owner: str
    since: float  # time.monotonic() when taken or last extended


TICKET: ContextVar[Ticket | None] = ContextVar("bc_sync_ledger_ticket", default=None)


def _amount(value: float | None) -> str | None:
    """A total BC answered (a JSON number) as decimal text in cents."""
    return None if value is None else f"{Decimal(str(value)).quantize(Decimal('0.01'))}"


def note_exported(data: Model) -> None:
    """Called by ``SyncContext.succeeded``: the BC id and number of what the handler wrote."""
    ticket = TICKET.get()
    if not isinstance(data, ExportedData | CreditNoteExportedData):
        return
    if ticket is not None and ticket.exported is None:
        ticket.exported = data


# --- the batched history -----------------------------------------------------------------------


class StepBuffer(FlushEvery):
    """History steps, written once per ``interval`` in one transaction."""

    name = "ledger-steps"

    def __init__(
        self,
        repository: LedgerRepository,
        *,
        interval: float = STEPS_FLUSH_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repository = repository
        self._interval = interval
        self._clock = clock
        self._pending: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    def add(
        self,
        org: str,
        object_type: str,
        moment_id: str,
        step: str,
        *,
        event_id: str | None = None,
        attempt: int | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        if len(self._pending) >= STEPS_BUFFER_MAX:
            del self._pending[: STEPS_BUFFER_MAX // 10]  # oldest history goes first
        self._pending.append(
            {
                "org_id": org[:100],
                "object_type": object_type[:30],
                "moment_id": moment_id[:200],
                "at": self._clock(),
                "step": step[:40],
                "event_id": event_id[:200] if event_id else None,
                "attempt": attempt,
                "code": code[:100] if code else None,
                "detail": clean(detail, DETAIL_MAX) if detail else None,
            }
        )

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await self._repository.add_steps(batch)
            except Exception:
                log.warning("ledger.history_write_failed", count=len(batch))
                self._pending[:0] = batch


# --- BC steps ----------------------------------------------------------------------------------


class RecordedConnection(BcConnection):
    """A BC connection whose write calls become history steps of the object being handled."""

    async def _step(self, name: str, call: Coroutine[Any, Any, T]) -> T:
        ticket = TICKET.get()
        if ticket is None:
            return await call
        try:
            await ticket.fence()
        except BaseException:
            call.close()  # never started: nothing was written
            raise
        started = _time.perf_counter()
        try:
            result = await call
        except BcError as exc:
            status = f"{exc.status} " if exc.status else ""
            ticket.step(f"bc {name}", code=exc.code or None, detail=f"failed: {status}{exc}")
            raise
        ticket.step(f"bc {name}", detail=f"ok in {(_time.perf_counter() - started) * 1000:.0f} ms")
        return result


# The BC write calls recorded as steps, and each one's step name (``bc <name>``).
RECORDED_CALLS = {
    "create_customer": "create customer",
    "update_customer": "update customer",
    "set_customer_posting_groups": "set posting groups",
    "create_dimension_value": "create dimension value",
    "rename_dimension_value": "rename dimension value",
    "create_sales_invoice": "create draft",
    "set_line_dimensions": "set line dimensions",
    "post_sales_invoice": "post invoice",
    "delete_sales_invoice": "delete draft",
}


def _recorded(method: str, step: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``method`` of the BC connection, recorded as the step ``bc <step>``."""

    async def call(self: RecordedConnection, *args: Any, **kwargs: Any) -> Any:
        return await self._step(
            step, getattr(super(RecordedConnection, self), method)(*args, **kwargs)
        )

    call.__name__, call.__qualname__ = method, f"RecordedConnection.{method}"
    return call


for _method, _step_name in RECORDED_CALLS.items():
    setattr(RecordedConnection, _method, _recorded(_method, _step_name))
del _method, _step_name


# --- the ledger --------------------------------------------------------------------------------


def _received_step(event: Event[Any]) -> tuple[str, str | None]:
    delivery = event.delivery
    if delivery.attempt > 1:  # back from the retry ladder (replay headers travel along)
        return "received", None
    if delivery.healed:
        return "replayed", f"automatically: {delivery.healed}"
    if delivery.replay_id:
        return "replayed", f"replay {delivery.replay_id}"
    return "received", None


def announce(state: str, published: str | None) -> bool:
    """Whether moving to ``state`` is news for Moment, which last heard ``published``."""
    if state == "synced":
        return published in ("failed", "waiting")
    return state in ("failed", "waiting") and published != state


@dataclass
class Fresh:
    """Inside :meth:`Ledger.embedded`: the snapshot is not older than what BC holds."""

    bc_id: str | None = None
    bc_number: str | None = None
    done: bool = field(default=False)

    def applied(self, *, bc_id: str | None = None, bc_number: str | None = None) -> None:
        self.bc_id, self.bc_number, self.done = bc_id, bc_number, True


class Ledger:
    """The ledger of one process: repository, batched history, the guard and the observer."""

    name = "ledger"

    def __init__(
        self,
        repository: LedgerRepository,
        *,
        emit: StatusEmit | None = None,
        clock: Callable[[], datetime] = utcnow,
        claim_ttl_s: float | None = None,
    ) -> None:
        self.repo = repository
        self.steps = StepBuffer(repository, clock=clock)
        self.emit = emit
        self._clock = clock
        self._claim_ttl_s = claim_ttl_s
        self.owner = f"ledger-{uuid.uuid4().hex[:12]}"
        self.observer = LedgerObserver(self)
        self._locks: KeyedLocks[str] = KeyedLocks()

    @property
    def claim_ttl_s(self) -> float:
        return CLAIM_TTL_S if self._claim_ttl_s is None else self._claim_ttl_s

    def now(self) -> datetime:
        return self._clock()

    async def start(self) -> None:
        await self.steps.start()

    async def stop(self) -> None:
        await self.steps.stop()

    async def flush(self) -> None:
        await self.steps.flush()

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.for_key(name)

    def guard(self, handler: Handler, configs: ConfigSource) -> Handler:
        """``handler`` under the newest-wins rule, its outcome written to the ledger."""

        async def guarded(event: Event[Any]) -> Outcome:
            return await self._run(handler, configs, event)

        return guarded

    async def _run(self, handler: Handler, configs: ConfigSource, event: Event[Any]) -> Outcome:
        object_type, moment_id, number = subject_of(event)
        # Organizations without the integration: Moment may publish every organization's
        # events; they leave no trace (the handler skips them as not configured).
        if object_type is None or moment_id is None or await configs.config(event.org) is None:
            return await handler(event)
        key = event_key(event)
        attempt = event.delivery.attempt
        where = (event.org, object_type, moment_id)
        async with self._lock("/".join(where)):
            owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
            claim = await self.repo.claim(
                *where,
                moment_number=number,
                key=key,
                event_id=event.id,
                attempt=attempt,
                owner=owner,
                ttl_s=self.claim_ttl_s,
                now=self._clock(),
                document=document_facts(event),
            )
            ticket = Ticket(
                self,
                event.org,
                object_type,
                moment_id,
                event.id,
                attempt,
                key,
                event.envelope.time,
                event_sequence(event),
                number,
            )
            ticket.holds.append(Hold(where, owner, _time.monotonic()))
            step, detail = _received_step(event)
            ticket.step(step, attempt=attempt, detail=detail)
            if claim.superseded:
                if claim.acquired:
                    await self.repo.release(*where, owner=owner, now=self._clock())
                ticket.step(
                    "superseded",
                    detail=f"a newer change (event {claim.applied_event_id}) is already in "
                    "Business Central",
                )
                return Outcome("superseded", reason="newer_change_applied")
            if not claim.acquired:
                raise Transient(
                    "BC-BUSY",
                    f"Another worker is exporting {object_type} {number or moment_id} right now.",
                )
            token = TICKET.set(ticket)
            try:
                outcome = await handler(event)
            except asyncio.CancelledError:
                raise  # the claim expires by itself; the message goes back to the queue
            except BaseException:
                await self._release_quietly(where, owner)
                raise
            finally:
                TICKET.reset(token)
            await self._finish(ticket, owner, claim.newest, claim.published_state, outcome)
            return outcome

    async def _release_quietly(self, where: tuple[str, str, str], owner: str) -> None:
        try:
            await self.repo.release(*where, owner=owner, now=self._clock())
        except Exception:
            log.warning("ledger.release_failed")

    async def _finish(
        self,
        ticket: Ticket,
        owner: str,
        newest: bool,
        published: str | None,
        outcome: Outcome,
    ) -> None:
        state = STATE_OF_KIND.get(str(outcome.kind))
        if state is None:
            await self._release_quietly((ticket.org, ticket.object_type, ticket.moment_id), owner)
            return
        exported = ticket.exported
        publish: str | None = None
        if newest and announce(state, published):
            await self._announce(ticket, state, published, exported=exported)
            publish = state
        applied = (
            None
            if state == "skipped"
            else Applied(ticket.key, ticket.event_id, ticket.time, ticket.sequence)
        )
        kept = await self.repo.finish(
            ticket.org,
            ticket.object_type,
            ticket.moment_id,
            owner=owner,
            event_id=ticket.event_id,
            state=state,
            applied=applied,
            bc_id=exported.bc_id if exported else None,
            bc_number=exported.bc_number if exported else None,
            published_state=publish,
            total_including_tax=_amount(exported.total_including_tax) if exported else None,
            currency_code=exported.currency_code if exported else None,
            now=self._clock(),
        )
        if not kept:
            log.warning("ledger.claim_expired")
        detail = outcome.reason if state == "skipped" else None
        if exported is not None and exported.bc_number:
            detail = f"Business Central number {exported.bc_number}"
        ticket.step(state, detail=detail if newest else f"{detail or state} (an older change)")

    async def _announce(
        self,
        ticket: Ticket,
        state: str,
        previous: str | None,
        *,
        exported: Exported | None = None,
        moment_number: str | None = None,
        bc_id: str | None = None,
        bc_number: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Publish ``bc.sync.status`` (confirmed; raises when the broker refused it)."""
        if self.emit is None:
            return
        data = SyncStatusData(
            object_type=ticket.object_type,
            moment_id=ticket.moment_id,
            moment_number=(exported.moment_number if exported else None)
            or moment_number
            or ticket.number,
            state=state,
            previous_state=previous,
            bc_id=(exported.bc_id if exported else None) or bc_id,
            bc_number=(exported.bc_number if exported else None) or bc_number,
            error_code=code,
            error_message=message,
            event_id=ticket.event_id,
            changed_at=self._clock(),
        )
        where = f"{ticket.org}/{ticket.object_type}/{ticket.moment_id}"
        event_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"bc-sync:{where}:{ticket.event_id}:status:{state}")
        )
        await self.emit(STATUS_EVENT, ticket.org, data, event_id)
        metrics.child(metrics.STATUS_EVENTS, state).inc()
        ticket.step("status sent", detail=f"bc.sync.status {state}")

    @asynccontextmanager
    async def embedded(
        self, object_type: str, moment_id: str, number: str | None
    ) -> AsyncIterator[Fresh | None]:
        """Apply a snapshot embedded in the event being handled (an invoice's customer or
        project) under the same rule: yields None when the object already holds a newer
        change (write nothing), else a :class:`Fresh` to call ``applied()`` on."""
        ticket = TICKET.get()
        if ticket is None:
            yield Fresh()
            return
        where = (ticket.org, object_type, moment_id)
        async with self._lock("/".join(where)):
            owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
            claim = await self.repo.claim(
                *where,
                moment_number=number,
                key=ticket.key,
                event_id=ticket.event_id,
                attempt=1,
                owner=owner,
                ttl_s=self.claim_ttl_s,
                now=self._clock(),
            )
            inner = Ticket(
                self,
                ticket.org,
                object_type,
                moment_id,
                ticket.event_id,
                1,
                ticket.key,
                ticket.time,
                ticket.sequence,
            )
            source = f"the snapshot in {ticket.object_type} event {ticket.event_id}"
            if claim.superseded:
                if claim.acquired:
                    await self.repo.release(*where, owner=owner, now=self._clock())
                inner.step("superseded", detail=f"{source}: a newer change is in Business Central")
                yield None
                return
            if not claim.acquired:
                raise Transient(
                    "BC-BUSY",
                    f"Another worker is exporting {object_type} {number or moment_id} right now.",
                )
            inner.step("received", detail=source)
            fresh = Fresh()
            hold = Hold(where, owner, _time.monotonic())
            ticket.holds.append(hold)
            try:
                yield fresh
            except BaseException as exc:
                ticket.holds.remove(hold)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                failed = exc if isinstance(exc, HandlerError) else None
                try:
                    await self.repo.release(
                        *where,
                        owner=owner,
                        event_id=ticket.event_id,
                        state="failed" if isinstance(failed, Permanent) else "retrying",
                        code=failed.code if failed else "BC-UNAVAILABLE",
                        message=failed.message if failed else str(exc),
                        now=self._clock(),
                    )
                except Exception:
                    log.warning("ledger.release_failed")
                raise
            ticket.holds.remove(hold)
            if not fresh.done:
                await self._release_quietly(where, owner)
                return
            await self.repo.finish(
                *where,
                owner=owner,
                event_id=ticket.event_id,
                state="synced",
                applied=Applied(ticket.key, ticket.event_id, ticket.time, ticket.sequence),
                bc_id=fresh.bc_id,
                bc_number=fresh.bc_number,
                now=self._clock(),
            )
            inner.step("synced", detail=source)


class LedgerObserver(Observer):
    """Retries and dead letters, once the consumer made them durable."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def on_failure(self, report: FailureReport) -> None:
        if not (report.org and report.object_type and report.moment_id and report.event_id):
            return
        ledger = self.ledger
        where = (report.org, report.object_type, report.moment_id)
        ledger.steps.add(
            *where,
            "dead-lettered" if report.final else "retry scheduled",
            event_id=report.event_id,
            attempt=report.attempts,
            code=report.code,
            detail=report.message,
        )
        state = "failed" if report.final else "retrying"
        changed = await ledger.repo.record_failure(
            *where,
            event_id=report.event_id,
            state=state,
            code=report.code,
            message=report.message,
            attempts=report.attempts,
            now=ledger._clock(),
        )
        if changed is None or not announce(state, changed[1]):
            return
        entry, published = changed
        ticket = Ticket(ledger, *where, report.event_id, report.attempts, "", None, None)
        await ledger._announce(
            ticket,
            state,
            published,
            moment_number=entry.moment_number,
            bc_id=entry.bc_id,
            bc_number=entry.bc_number,
            code=report.code,
            message=clean(report.message),
        )
        await ledger.repo.set_published(*where, event_id=report.event_id, state=state)
