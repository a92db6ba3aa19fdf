"""Payment import: payments of the invoices bc-sync exported go back to Moment as
``bc.invoice.paid`` (the invoice is paid in full) and ``bc.invoice.payment_updated`` (its open
amount changed otherwise: a partial payment or credit memo, or a payment reversed).

Which invoices: those bc-sync exported, recorded in ``invoice_payments`` when the export
succeeds (:meth:`PaymentState.exported`, called by :meth:`SyncContext.succeeded`), posted on or
after the organization's from date. An invoice posted in BC by hand is never reported, even
with a Moment-looking external document number: BC's external document number is free text (a
customer's order number just as well), and only our own record knows the Moment invoice id.

How BC shows payments (bc-api.md Corrections 12): a posted invoice's status turns ``Paid``
when its customer ledger entry closes, and that change updates ``lastModifiedDateTime`` (so
does a reversal that makes it ``Open`` again); a partial payment changes nothing on the row,
its ``remainingAmount`` is computed when read. So each round of one organization:

1. reads the invoices whose ``lastModifiedDateTime`` is after the watermark (less an overlap)
   with status Open or Paid: the invoices that turned paid, and paid ones opened again (the
   first round, without a watermark, reads every Open or Paid invoice posted since the from
   date, a thousand a page);
2. re-reads the open invoices we exported by id (:data:`~worker.bc.odata.MAX_OR_TERMS` a
   request, ``$select`` the few fields), oldest-checked first, at most ``checks_per_round``:
   partial payments are only seen this way.

Exactly once: the store keeps, per invoice, what Moment was last told (status, remaining
amount) and a change counter. A change is published (confirmed by the broker) before the store
records it, with an event id derived from the organization, the invoice, the counter and the
new state: a crash in between re-sends the same id at most; a second poller is kept out by the
lease ``payments:{org}`` (and an update that finds the counter moved is dropped).

BC requests per organization and round: one read of the changes (one page at a time) plus one
per 20 open invoices re-read. For 1,000 open invoices at the default hourly interval that is
24 x (1 + 50) = 1,224 requests a day, 0.07 % of BC's 6,000 per 5 minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import structlog
from sqlalchemy import (
    Column,
    Integer,
    String,
    Table,
    and_,
    case,
    func,
    or_,
    select,
    update,
)

from worker.bc.models import SalesInvoiceBalance
from worker.events.envelope import build
from worker.events.models import (
    ExportedData,
    InvoicePaidData,
    InvoicePaymentUpdatedData,
    Model,
)
from worker.metrics import PAYMENT_EVENTS, PAYMENTS_POLLER_LAG
from worker.store import StoredConfig, check_org_id, utcnow
from worker.store.migrations import UtcDateTime, metadata
from worker.sync.expenses import EventSink, PollResult, PollStates, poll_state_table
from worker.sync.poller import Poller, PollFailure, _KeepAlive

log = structlog.get_logger(__name__)

PAID_EVENT = "bc.invoice.paid"
UPDATED_EVENT = "bc.invoice.payment_updated"
OBJECT_TYPE = "payment"  # sync_outcomes / FailureReport object type
# Event ids are uuid5(org / invoice / change number / state) in this namespace.
PAYMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bc-sync:bc.invoice.payment")
# The changes read starts this much before the watermark: rows committed late with an older
# lastModifiedDateTime are not missed (the stored state keeps them from being reported twice).
READ_OVERLAP = timedelta(minutes=5)
CHANGES_PAGE_SIZE = 1000  # rows of the changes read per page (a $select of ten fields)
# Open invoices re-read per round and organization: 50 requests of 20. More open invoices are
# spread over rounds, the longest unchecked first.
CHECKS_PER_ROUND = 1000
LOOKUP_CHUNK = 500  # ids per store query
OPEN, PAID = "Open", "Paid"
# Statuses after which an invoice is no longer followed (no payment can change it any more).
ENDED = frozenset({"Canceled", "Corrective"})
CENT = Decimal("0.01")

PAUSE_CODES = frozenset(
    {
        "BC-CREDENTIALS-REJECTED",
        "BC-ENVIRONMENT-MISSING",
        "BC-COMPANY-MISSING",
        "CONFIG-PAYMENTS-INCOMPLETE",
    }
)

# The watermark: the newest lastModifiedDateTime of a round's changes read.
payment_polls = poll_state_table("payment_polls")

invoice_payments = Table(
    "invoice_payments",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("bc_id", String(36), primary_key=True),
    Column("moment_id", String(200), nullable=False),
    Column("moment_number", String(200), nullable=False),
    Column("bc_number", String(20)),
    Column("currency_code", String(10)),
    Column("total_including_tax", String(40)),
    Column("exported_at", UtcDateTime, nullable=False),
    Column("posting_date", String(10)),  # from BC, once read
    # What Moment was last told: the status and remaining amount at the export, then after
    # each reported change (change_seq counts those).
    Column("status", String(20), nullable=False),
    Column("remaining_amount", String(40)),
    Column("change_seq", Integer, nullable=False, default=0),
    Column("changed_at", UtcDateTime),
    Column("checked_at", UtcDateTime),  # last read in BC (oldest first)
)


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount.quantize(CENT))


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Followed:
    """One exported invoice as the store knows it."""

    bc_id: str
    moment_id: str
    moment_number: str
    bc_number: str
    currency_code: str
    total: Decimal | None
    status: str
    remaining: Decimal | None
    change_seq: int
    posting_date: date | None = None
    checked_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Followed:
        return cls(
            bc_id=row.bc_id,
            moment_id=row.moment_id,
            moment_number=row.moment_number,
            bc_number=row.bc_number or "",
            currency_code=row.currency_code or "",
            total=_decimal(row.total_including_tax),
            status=row.status,
            remaining=_decimal(row.remaining_amount),
            change_seq=int(row.change_seq or 0),
            posting_date=_date(row.posting_date),
            checked_at=row.checked_at,
        )


@dataclass(frozen=True)
class Seen:
    """What the store records after one invoice was read: always when, and the posting
    date; the state only when it changed (``seq`` then tells which change it is)."""

    bc_id: str
    previous_seq: int
    at: datetime
    posting_date: date | None
    status: str | None = None
    remaining: Decimal | None = None
    seq: int | None = None  # set when a change was reported to Moment


# ---------------------------------------------------------------------------------------------
# The decision for one invoice (pure)


def event_id(org: str, bc_id: str, seq: int, status: str, remaining: Decimal) -> str:
    """The CloudEvents id of the ``seq``-th reported change of an invoice (same inputs, same
    id: a re-send after a crash is a duplicate Moment drops)."""
    key = f"{org}/{bc_id.lower()}/{seq}/{status}/{_text(remaining)}"
    return str(uuid.uuid5(PAYMENT_NAMESPACE, key))


@dataclass(frozen=True)
class Change:
    """An event to publish for one invoice, and what the store records once it is confirmed."""

    event_type: str
    event_id: str
    data: InvoicePaidData | InvoicePaymentUpdatedData
    seen: Seen

    def item(self, org: str) -> tuple[str, bytes, str]:
        body = build(self.event_type, org, self.data, id_=self.event_id, time=self.seen.at)
        return self.event_type, body, self.event_id


def observe(
    org: str, followed: Followed, bc: SalesInvoiceBalance, *, from_date: date, at: datetime
) -> Change | Seen:
    """Compare what BC shows now with what Moment was last told: the change to report, or
    just what to record (when it was read; a status after which it is no longer followed)."""
    quiet = Seen(followed.bc_id, followed.change_seq, at, bc.posting_date)
    if bc.posting_date is not None and bc.posting_date < from_date:
        return quiet  # not followed while before the from date (a later, earlier date will)
    if bc.status in ENDED:
        return Seen(followed.bc_id, followed.change_seq, at, bc.posting_date, bc.status)
    if bc.status not in (OPEN, PAID) or bc.remaining_amount is None:
        return quiet  # a draft or a status BC may add: nothing Moment could act on
    total = bc.total_amount_including_tax if bc.total_amount_including_tax else followed.total
    remaining = bc.remaining_amount.quantize(CENT)
    # What Moment knows is open: the last reported amount, else (export without totals) the total.
    told = followed.remaining
    if told is None and total is not None:
        told = total.quantize(CENT)
    if bc.status == followed.status and (bc.status == PAID or remaining == told):
        return quiet
    seq = followed.change_seq + 1
    seen = Seen(followed.bc_id, followed.change_seq, at, bc.posting_date, bc.status, remaining, seq)
    common: dict[str, Any] = {
        "moment_id": followed.moment_id,
        "moment_number": followed.moment_number,
        "bc_id": followed.bc_id,
        "bc_number": bc.number or followed.bc_number,
        "amount": float(total or 0),
        "currency_code": (bc.currency_code or followed.currency_code).upper(),
        "seen_at": at,
    }
    data: InvoicePaidData | InvoicePaymentUpdatedData
    if bc.status == PAID:
        when = bc.last_modified
        data = InvoicePaidData(
            **common,
            paid_date=(when or at).date(),
            paid_date_source="bc_last_modified" if when is not None else "seen",
        )
        kind = PAID_EVENT
    else:
        previous = told if told is not None else remaining
        data = InvoicePaymentUpdatedData(
            **common,
            remaining_amount=float(remaining),
            previous_remaining_amount=float(previous),
            paid_amount=float((total or Decimal(0)) - remaining),
            status=bc.status,
            previous_status=followed.status,
        )
        kind = UPDATED_EVENT
    return Change(kind, event_id(org, followed.bc_id, seq, bc.status, remaining), data, seen)


# ---------------------------------------------------------------------------------------------
# State in the store


class PaymentState(PollStates):
    """The payment import's tables: poll state per organization (``payment_polls``) and the
    invoices bc-sync exported with what Moment was last told (``invoice_payments``).

    The invoices outlive a deleted config on purpose: an integration set up again goes on
    from what Moment already knows.
    """

    table = payment_polls

    async def exported(self, org_id: str, data: Model) -> None:
        """A posted invoice was exported (or found already posted): follow it. Saying so again
        (a replayed export) keeps what Moment was told about its payment. Credit notes are not
        followed: applied to an invoice, they show as its payment."""
        if not isinstance(data, ExportedData):
            return
        if data.object_type != "invoice" or not data.bc_id or data.status in (None, "Draft"):
            return
        total = _decimal(data.total_including_tax)
        values = {
            "org_id": check_org_id(org_id),
            "bc_id": data.bc_id.lower(),
            "moment_id": data.moment_id[:200],
            "moment_number": data.moment_number[:200],
            "bc_number": (data.bc_number or "")[:20],
            "currency_code": (data.currency_code or "")[:10],
            "total_including_tax": _text(total),
            "exported_at": utcnow(),
            # What Moment knows after bc.invoice.exported: the invoice is open for its total.
            "status": OPEN,
            "remaining_amount": _text(total),
            "change_seq": 0,
        }
        stmt = self._store.upsert(
            invoice_payments,
            values,
            ["org_id", "bc_id"],
            ["moment_id", "moment_number", "bc_number", "currency_code", "total_including_tax"],
        )
        async with self._store.write() as conn:
            await conn.execute(stmt)

    async def followed(self, org_id: str, bc_ids: Iterable[str]) -> dict[str, Followed]:
        """The exported invoices among ``bc_ids`` (by lower-case id)."""
        t = invoice_payments
        wanted = sorted({i.lower() for i in bc_ids})
        found: dict[str, Followed] = {}
        async with self._store.read() as conn:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                query = select(t).where(
                    and_(t.c.org_id == check_org_id(org_id), t.c.bc_id.in_(chunk))
                )
                for row in await conn.execute(query):
                    found[row.bc_id] = Followed.from_row(row)
        return found

    async def due(self, org_id: str, from_date: date, limit: int) -> list[Followed]:
        """Open invoices to re-read, never read or longest unread first, not posted before
        ``from_date`` (an unknown posting date counts as due)."""
        t = invoice_payments
        query = (
            select(t)
            .where(
                t.c.org_id == check_org_id(org_id),
                t.c.status == OPEN,
                or_(t.c.posting_date.is_(None), t.c.posting_date >= from_date.isoformat()),
            )
            .order_by(case((t.c.checked_at.is_(None), 0), else_=1), t.c.checked_at, t.c.bc_id)
            .limit(limit)
        )
        async with self._store.read() as conn:
            return [Followed.from_row(row) for row in await conn.execute(query)]

    async def record(self, org_id: str, seen: Sequence[Seen]) -> int:
        """Store what was read (after any change was confirmed by the broker). A row whose
        change counter moved meanwhile (another poller) is left alone; returns rows written."""
        t = invoice_payments
        org_id = check_org_id(org_id)
        written = 0
        async with self._store.write() as conn:
            for s in seen:
                values: dict[str, Any] = {"checked_at": s.at}
                if s.posting_date is not None:
                    values["posting_date"] = s.posting_date.isoformat()
                if s.status is not None:
                    values["status"] = s.status[:20]
                    if s.remaining is not None or s.seq is not None:
                        values["remaining_amount"] = _text(s.remaining)
                if s.seq is not None:
                    values["change_seq"] = s.seq
                    values["changed_at"] = s.at
                result = await conn.execute(
                    update(t)
                    .where(
                        t.c.org_id == org_id,
                        t.c.bc_id == s.bc_id.lower(),
                        t.c.change_seq == s.previous_seq,
                    )
                    .values(**values)
                )
                written += result.rowcount
        return written

    async def save_watermark(
        self, org_id: str, watermark: datetime | None, *, from_date: date, at: datetime
    ) -> None:
        """A round succeeded: move the watermark and clear the error and any pause."""
        await self._record_success(org_id, watermark, from_date=from_date, at=at)

    async def counts(self, org_id: str) -> dict[str, int]:
        """How many exported invoices per status (for the status route)."""
        t = invoice_payments
        query = (
            select(t.c.status, func.count().label("n"))
            .where(t.c.org_id == check_org_id(org_id))
            .group_by(t.c.status)
        )
        async with self._store.read() as conn:
            return {str(row.status): int(row.n) for row in await conn.execute(query)}


# ---------------------------------------------------------------------------------------------
# One round for one organization


class BalanceSource(Protocol):
    """The BC calls a round makes (:class:`worker.bc.BcConnection` is one)."""

    def sales_invoice_changes(
        self,
        from_date: date,
        since: datetime | None = None,
        *,
        statuses: Sequence[str] = ...,
        page_size: int | None = None,
    ) -> AsyncIterator[list[SalesInvoiceBalance]]: ...

    def sales_invoice_balances(
        self, invoice_ids: Sequence[str]
    ) -> AsyncIterator[tuple[list[str], list[SalesInvoiceBalance]]]: ...


@dataclass
class PaymentPollResult(PollResult):
    """What one payment round did for one organization (the CLI prints it)."""

    paid: int = 0  # bc.invoice.paid published
    updated: int = 0  # bc.invoice.payment_updated published
    checked: int = 0  # exported invoices read this round
    not_ours: int = 0  # changed invoices bc-sync did not export (posted by hand, say)
    missing: int = 0  # exported invoices BC no longer returned
    requests: int = 0  # BC reads of the round (token and company lookups not counted)
    event_types: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "published": self.published,
            "paid": self.paid,
            "payment_updated": self.updated,
            "checked": self.checked,
            "not_ours": self.not_ours,
            "missing": self.missing,
            "bc_requests": self.requests,
        }


async def poll_org(
    org: str,
    from_date: date,
    bc: BalanceSource,
    *,
    state: PaymentState,
    sink: EventSink,
    page_size: int | None = CHANGES_PAGE_SIZE,
    checks_per_round: int = CHECKS_PER_ROUND,
    keep_alive: Callable[[], Awaitable[None]] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> PaymentPollResult:
    """One round for one organization whose payment import is on; BC errors propagate.

    Per page (changes) or request (re-reads): publish the changes with confirms, then record
    them. The watermark moves after the last page of the changes read, to the newest
    ``lastModifiedDateTime`` it returned; a round cut short reads the changes again (the stored
    state skips what was reported).
    """
    result = PaymentPollResult(org)
    previous = await state.get(org)
    newest = previous.watermark if previous is not None else None
    since = newest - READ_OVERLAP if newest is not None else None
    seen_now: set[str] = set()

    async def handle(rows: Sequence[SalesInvoiceBalance], asked: Sequence[str] = ()) -> None:
        if keep_alive is not None:
            await keep_alive()
        result.requests += 1
        at = now()
        known = await state.followed(org, [r.id for r in rows if r.id] + list(asked))
        changes: list[Change] = []
        records: list[Seen] = []
        for row in rows:
            followed = known.get(row.id)
            if followed is None:
                result.not_ours += 1
                continue
            seen_now.add(row.id)
            result.checked += 1
            outcome = observe(org, followed, row, from_date=from_date, at=at)
            if isinstance(outcome, Change):
                changes.append(outcome)
                records.append(outcome.seen)
            else:
                records.append(outcome)
        returned = {r.id for r in rows}
        for bc_id in asked:
            followed = known.get(bc_id)
            if bc_id not in returned and followed is not None:
                # Kept as it was (re-read last in later rounds): another company may be
                # configured now, and the invoice is back when it is switched back.
                result.missing += 1
                log.warning("payments.invoice_missing_in_bc", org=org, bc_id=bc_id)
                records.append(Seen(bc_id, followed.change_seq, at, None))
        if changes:
            await sink.events(c.item(org) for c in changes)
            for c in changes:
                result.published += 1
                result.event_ids.append(c.event_id)
                result.event_types.append(c.event_type)
                PAYMENT_EVENTS.labels(c.event_type).inc()
                if c.event_type == PAID_EVENT:
                    result.paid += 1
                else:
                    result.updated += 1
        if records:
            await state.record(org, records)

    # 1. Status changes since the watermark: paid, and paid ones opened again.
    async for page in bc.sales_invoice_changes(
        from_date, since, statuses=(OPEN, PAID), page_size=page_size
    ):
        result.pages += 1
        await handle(page)
        stamps = [r.last_modified for r in page if r.last_modified is not None]
        if stamps and (newest is None or max(stamps) > newest):
            newest = max(stamps)

    # 2. Partial payments: re-read the open ones, longest unchecked first.
    due = [
        f
        for f in await state.due(org, from_date, checks_per_round + len(seen_now))
        if f.bc_id not in seen_now
    ][:checks_per_round]
    async for asked, rows in bc.sales_invoice_balances([f.bc_id for f in due]):
        await handle(rows, asked)

    finished = now()
    await state.save_watermark(org, newest, from_date=from_date, at=finished)
    result.watermark = newest
    log.info(
        "payments.polled",
        org=org,
        **result.counts(),
        watermark=newest.isoformat() if newest else None,
    )
    return result


# ---------------------------------------------------------------------------------------------
# The payments part of the poll role


class PaymentPoller(Poller):
    """The payment import: :class:`Poller` with this module's round, one organization at a
    time under the lease ``payments:{org}``, every ``BC_SYNC_PAYMENTS_INTERVAL_S``."""

    name = "poll-payments"
    part = "payment"
    toggle = "import_payments"
    lease_prefix = "payments"
    subject = "payments"
    event_type = PAID_EVENT
    object_type = OBJECT_TYPE
    pause_codes = PAUSE_CODES
    interval_setting = "payments_interval_s"
    lag_gauge = PAYMENTS_POLLER_LAG
    state_type = PaymentState
    result_type = PaymentPollResult
    state: PaymentState

    def __init__(
        self,
        *,
        page_size: int | None = CHANGES_PAGE_SIZE,
        checks_per_round: int = CHECKS_PER_ROUND,
        **options: Any,
    ) -> None:
        super().__init__(page_size=page_size, **options)
        self.checks_per_round = checks_per_round

    async def _poll_leased(
        self, org: str, stored: StoredConfig, keep_alive: _KeepAlive
    ) -> PollResult:
        config = stored.config
        if config.payments_from_date is None:
            raise PollFailure(
                "CONFIG-PAYMENTS-INCOMPLETE",
                "From date for payments must be set to import payments: payments are imported "
                "for the invoices posted on or after it.",
                pause=True,
            )
        # BC and credential errors become pauses or retries in Poller._leased.
        return await poll_org(
            org,
            config.payments_from_date,
            self.ctx.connection(config),
            state=self.state,
            sink=self.sink,
            page_size=self.page_size,
            checks_per_round=self.checks_per_round,
            keep_alive=keep_alive.check,
        )
