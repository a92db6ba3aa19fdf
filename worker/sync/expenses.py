"""Expense import (DESIGN §7): posted BC purchase-invoice lines on a project become
``bc.expense.imported`` events for Moment; lines of an invoice cancelled later become
``bc.expense.withdrawn``.

- :func:`expense_of` is the pure transform of one line (plus its invoice header).
- :func:`poll_org` runs one round for one organization: read the invoices changed since the
  watermark (``postingDate ge`` the from date), publish one event per line not published before,
  with confirms, remember the line ids, withdraw the lines of cancelled invoices, then move the
  watermark, then re-check a bounded number of older invoices for cancellations.
- :class:`ExpenseState` is the repository of the ``expense_polls``, ``published_expenses`` and
  ``expense_invoices`` tables (migration steps 3 and 5).

Exactly once as far as Moment can tell: the event id is derived from the organization and the BC
line id, and the published line ids are kept per organization, so a watermark reset, an earlier
from date, the read overlap or a replica racing us never re-sends a line; a crash between a
publish and its bookkeeping re-sends the same ids at most. Withdrawals work the same way (their
own stable id per line, recorded once the broker confirmed).

Cancelled invoices (bc-api.md Corrections 7). Only posted invoices are imported: status
``Open``, ``Paid`` or ``Corrective`` (PurchInvAggregator.Codeunit.al gives every unposted
purchase invoice ``Draft``; ``Canceled`` and anything unknown are not imported). A posted
invoice turns ``Canceled`` when BC's "Cancel" (or "Correct") posts a corrective credit memo
(CorrectPostedPurchInvoice.Codeunit.al). Does that move the invoice's ``lastModifiedDateTime``?
The AL says yes: the "Cancelled Document" insert reaches ``UpdateStatusIfChanged``, which
``Modify(true)``s the "Purch. Inv. Entity Aggregate" row whose ``SystemModifiedAt`` the API
serves. But the AL does not make it certain that the change read sees it: the chain runs
through event subscribers that an integration event can switch off
(``OnGetAggregateTablesUpdateEnabled``, ``OnGetIsAPIEnabled``), and ``SystemModifiedAt`` is the
time of the modify inside the posting transaction, which can commit after a round has moved the
watermark past it (more than :data:`READ_OVERLAP` for a long posting). So the stricter
assumption is taken, that it may not change, and cancellations are found two ways:

1. the change read withdraws the lines of any ``Canceled`` invoice it returns (no extra
   request: prompt whenever the timestamp does move, which the AL says is the normal case);
2. every round re-reads the status of at most ``CHECK_REQUESTS * CHECK_BATCH`` (40) invoices that
   lines were imported from, oldest-checked first (``GET purchaseInvoices?$filter=id eq … or
   …&$select=id,number,status,lastModifiedDateTime``): at most ``CHECK_REQUESTS`` (2) BC
   requests per organization per round on top of the change read, each invoice re-checked every
   ``invoices / 40`` rounds. An invoice seen by the change read counts as checked.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import ValidationError
from sqlalchemy import Column, Integer, String, Table, Text, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.bc.models import PurchaseInvoice, PurchaseInvoiceLine, PurchaseInvoicePage
from worker.config.model import IntegrationConfig
from worker.events.envelope import build
from worker.events.models import (
    Expense,
    ExpenseImportedData,
    ExpenseWithdrawal,
    ExpenseWithdrawnData,
)
from worker.log import redact_text
from worker.store import Store, UtcDateTime, check_org_id, metadata, utcnow

log = structlog.get_logger(__name__)

EVENT_TYPE = "bc.expense.imported"
WITHDRAWN_TYPE = "bc.expense.withdrawn"
WITHDRAW_REASON = "canceled"
OBJECT_TYPE = "expense"  # sync_outcomes / FailureReport object type
# Event ids are uuid5(org + line id) in this namespace: the same line always gets the same id.
EXPENSE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bc-sync:bc.expense.imported")
WITHDRAWN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bc-sync:bc.expense.withdrawn")
# The re-check of imported invoices for cancellations (module docstring): invoice ids per
# request (``id eq … or …``, about 1 KB of URL) and requests per organization per round.
CHECK_BATCH = 20
CHECK_REQUESTS = 2
# Each read starts this much before the watermark: invoices committed late with an older
# lastModifiedDateTime, and ties at a page boundary, are not missed (the ids dedupe them).
READ_OVERLAP = timedelta(minutes=5)
LOOKUP_CHUNK = 500  # line ids per "already published?" query


def poll_state_table(name: str, *built_with: Column[Any]) -> Table:
    """A poll-state table (one row per organization, read by :class:`PollStates`).

    ``watermark``: the newest ``lastModifiedDateTime`` of a round (BC's clock) the import
    finished. It is valid for the ``from_date`` (and the ``built_with`` columns) it was built
    with: another from date invalidates it. ``paused_version``: the config version that was
    paused (a save resumes)."""
    return Table(
        name,
        metadata,
        Column("org_id", String(100), primary_key=True),
        Column("watermark", UtcDateTime),
        Column("from_date", String(10)),
        *built_with,
        Column("last_poll_at", UtcDateTime),
        Column("last_success_at", UtcDateTime),
        Column("last_error_code", String(100)),
        Column("last_error_message", Text),
        Column("paused_at", UtcDateTime),
        Column("paused_version", Integer),
    )


# The watermark covers rounds whose lines were all published and confirmed; another project
# dimension invalidates it too (the ids keep the re-read from re-sending).
expense_polls = poll_state_table("expense_polls", Column("project_dimension", String(20)))

published_expenses = Table(
    "published_expenses",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("line_id", String(100), primary_key=True),
    Column("event_id", String(100), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    # Step 5: the BC invoice of the line (None for lines published before, until a re-read),
    # what a withdrawal tells Moment, and the withdrawal once confirmed.
    Column("invoice_id", String(100)),
    Column("document_number", String(100)),
    Column("project_number", String(100)),
    Column("withdrawn_at", UtcDateTime),
    Column("withdrawn_event_id", String(100)),
)

expense_invoices = Table(
    "expense_invoices",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("invoice_id", String(100), primary_key=True),
    Column("document_number", String(100), nullable=False),
    Column("checked_at", UtcDateTime, nullable=False),  # status last seen (re-check order)
    Column("canceled_at", UtcDateTime),  # seen Canceled and every line withdrawn
)


# ---------------------------------------------------------------------------------------------
# Pure transform


class ExpenseSettings(Protocol):
    """The config fields the transform reads (an :class:`IntegrationConfig` has them)."""

    @property
    def project_dimension(self) -> str | None: ...
    @property
    def expense_activity(self) -> str | None: ...
    @property
    def expenses_billable(self) -> bool | None: ...
    @property
    def expenses_from_date(self) -> date | None: ...


def event_id(org: str, line_id: str) -> str:
    """The stable CloudEvents id of a BC line's expense event in one organization."""
    return str(uuid.uuid5(EXPENSE_NAMESPACE, f"{org}/{line_id.strip().lower()}"))


def withdrawn_event_id(org: str, line_id: str) -> str:
    """The stable CloudEvents id of a BC line's withdrawal in one organization."""
    return str(uuid.uuid5(WITHDRAWN_NAMESPACE, f"{org}/{line_id.strip().lower()}"))


def project_code(line: PurchaseInvoiceLine, dimension: str) -> str | None:
    """The line's value of the project dimension (BC codes compare case-insensitively)."""
    wanted = dimension.strip().upper()
    for dim in line.dimensions:
        if dim.code.strip().upper() == wanted and dim.value_code.strip():
            return dim.value_code.strip()
    return None


def expense_of(
    invoice: PurchaseInvoice,
    line: PurchaseInvoiceLine,
    config: ExpenseSettings,
    local_currency: str,
) -> Expense | None:
    """The expense of one purchase-invoice line, or ``None`` when it is not one for Moment.

    Not one: the invoice is not posted (a draft) or cancelled, the line has no id, or it has no
    value of the project dimension. A line with odd numbers (no amount) is still an expense:
    Moment decides.
    """
    if not invoice.is_posted or invoice.is_canceled or not line.id or not config.project_dimension:
        return None
    project = project_code(line, config.project_dimension)
    if project is None:
        return None
    when = invoice.posting_date or invoice.invoice_date
    if when is None and invoice.last_modified is not None:
        when = invoice.last_modified.date()
    if when is None:
        return None
    return Expense(
        id=line.id,
        project_number=project,
        activity=config.expense_activity or "",
        billable=bool(config.expenses_billable),
        date=when,
        description=line.description,
        quantity=float(line.quantity),
        unit_cost=float(line.unit_cost),
        amount=float(line.net_amount),
        # BC shows the local currency as its LCY code; blank (no LCY code set) means it too.
        currency_code=(invoice.currency_code or local_currency).strip().upper(),
        vendor_number=invoice.vendor_number or None,
        vendor_name=invoice.vendor_name or None,
        document_number=invoice.number,
        vendor_invoice_number=invoice.vendor_invoice_number or None,
    )


@dataclass(frozen=True)
class PageExpenses:
    """What one page holds for Moment: the expenses (with their invoice), the cancelled
    invoices, and the lines that are not expenses."""

    expenses: list[Expense]
    skipped: int
    invoice_of: dict[str, PurchaseInvoice] = field(default_factory=dict)  # by expense id
    canceled: list[PurchaseInvoice] = field(default_factory=list)


def expenses_of_page(
    page: PurchaseInvoicePage, config: ExpenseSettings, local_currency: str
) -> PageExpenses:
    """The expenses of a page's posted invoices (posted on or after the from date); the lines of
    cancelled invoices are no expenses (they count as skipped) and their invoices are listed."""
    expenses: list[Expense] = []
    invoice_of: dict[str, PurchaseInvoice] = {}
    canceled: list[PurchaseInvoice] = []
    skipped = 0
    since = config.expenses_from_date
    for invoice in page.invoices:
        if invoice.is_canceled:
            canceled.append(invoice)  # whatever its date: lines imported before are withdrawn
        if since is not None and invoice.posting_date is not None and invoice.posting_date < since:
            skipped += len(invoice.lines)  # BC filters on it already; never trust one answer
            continue
        for line in invoice.lines:
            try:
                expense = expense_of(invoice, line, config, local_currency)
            except ValidationError as exc:
                # Outside the event contract (BC sent something absurd): Moment cannot take it.
                log.error(
                    "expenses.line_unusable",
                    document_number=invoice.number,
                    line_id=line.id,
                    error=str(exc).splitlines()[0],
                )
                expense = None
            if expense is None:
                skipped += 1
            else:
                expenses.append(expense)
                invoice_of[expense.id] = invoice
    return PageExpenses(expenses, skipped, invoice_of, canceled)


# ---------------------------------------------------------------------------------------------
# State in the store


@dataclass(frozen=True)
class PollState:
    """One organization's row of ``expense_polls``."""

    org_id: str
    watermark: datetime | None = None
    from_date: str | None = None
    project_dimension: str | None = None
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    paused_at: datetime | None = None
    paused_version: int | None = None

    def paused_for(self, config_version: int) -> bool:
        """Paused, and the config was not saved since (a save is the person's answer)."""
        return self.paused_at is not None and self.paused_version == config_version


class PollStates:
    """One import's poll state per organization, in a table shaped like ``expense_polls``
    (the payment import has its own): read it, record a failure or a pause."""

    table: Table = expense_polls

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, org_id: str) -> PollState | None:
        t = self.table
        async with self._store.read() as conn:
            row = (await conn.execute(select(t).where(t.c.org_id == check_org_id(org_id)))).first()
        return None if row is None else PollState(**row._asdict())

    async def _upsert(self, org_id: str, values: dict[str, Any]) -> None:
        stmt = self._store.upsert(
            self.table, {"org_id": check_org_id(org_id), **values}, ["org_id"], list(values)
        )
        async with self._store.write() as conn:
            await conn.execute(stmt)

    async def _record_success(
        self,
        org_id: str,
        watermark: datetime | None,
        *,
        from_date: date,
        at: datetime,
        **built_with: Any,
    ) -> None:
        """A round succeeded: move the watermark (built with ``from_date`` and the table's
        ``built_with`` columns) and clear the error and any pause."""
        await self._upsert(
            org_id,
            {
                "watermark": watermark,
                "from_date": from_date.isoformat(),
                **built_with,
                "last_poll_at": at,
                "last_success_at": at,
                "last_error_code": None,
                "last_error_message": None,
                "paused_at": None,
                "paused_version": None,
            },
        )

    async def record_error(
        self, org_id: str, code: str, message: str, *, pause_version: int | None = None
    ) -> None:
        """A round failed; with ``pause_version`` polling stops until the config is saved."""
        values: dict[str, Any] = {
            "last_poll_at": utcnow(),
            "last_error_code": code[:100],
            "last_error_message": redact_text(message)[:2000],
        }
        if pause_version is not None:
            values["paused_at"] = utcnow()
            values["paused_version"] = pause_version
        await self._upsert(org_id, values)


class ExpenseState(PollStates):
    """The expense import's tables: poll state per organization, published line ids.

    The ids outlive a deleted config on purpose: an integration set up again never re-sends.
    """

    async def save_watermark(
        self,
        org_id: str,
        watermark: datetime | None,
        *,
        from_date: date,
        project_dimension: str,
        at: datetime | None = None,
    ) -> None:
        """A round succeeded: move the watermark and clear the error and any pause."""
        at = at or utcnow()
        dimension = project_dimension.upper()
        await self._record_success(
            org_id, watermark, from_date=from_date, at=at, project_dimension=dimension
        )

    async def unpublished(self, org_id: str, line_ids: Sequence[str]) -> set[str]:
        """The ids among ``line_ids`` not yet published for the organization."""
        t = published_expenses
        wanted = {i.lower() for i in line_ids}
        seen: set[str] = set()
        ordered = sorted(wanted)
        async with self._store.read() as conn:
            for start in range(0, len(ordered), LOOKUP_CHUNK):
                chunk = ordered[start : start + LOOKUP_CHUNK]
                query = select(t.c.line_id).where(
                    and_(t.c.org_id == check_org_id(org_id), t.c.line_id.in_(chunk))
                )
                seen.update((await conn.execute(query)).scalars())
        return wanted - seen

    async def mark_published(self, org_id: str, lines: Iterable[PublishedLine]) -> None:
        """Remember lines whose publish the broker confirmed (with the invoice they came from)."""
        now = utcnow()
        rows = [
            {
                "org_id": check_org_id(org_id),
                "line_id": line.line_id.lower(),
                "event_id": line.event_id,
                "published_at": now,
                "invoice_id": _lower(line.invoice_id),
                "document_number": line.document_number,
                "project_number": line.project_number,
            }
            for line in lines
        ]
        if not rows:
            return
        insert: Any = postgresql.insert if self._store.dialect == "postgresql" else sqlite.insert
        # Idempotent: a racing replica (or a re-send after a crash) may have recorded the line.
        stmt = insert(published_expenses).on_conflict_do_nothing(
            index_elements=["org_id", "line_id"]
        )
        async with self._store.write() as conn:
            await conn.execute(stmt, rows)

    async def fill_invoices(self, org_id: str, lines: Sequence[PublishedLine]) -> None:
        """Name the invoice (and project, document) of lines published before migration step 6
        kept them; lines that have one already are left alone."""
        t = published_expenses
        rows = [
            {
                "k_line": line.line_id.lower(),
                "v_invoice": _lower(line.invoice_id),
                "v_document": line.document_number,
                "v_project": line.project_number,
            }
            for line in lines
            if line.invoice_id
        ]
        await self._update_lines(
            org_id,
            rows,
            t.c.invoice_id,
            invoice_id=bindparam("v_invoice"),
            document_number=bindparam("v_document"),
            project_number=bindparam("v_project"),
        )

    async def record_invoices(
        self, org_id: str, invoices: Mapping[str, str], *, at: datetime | None = None
    ) -> None:
        """Invoices (id → number) lines were published from, their status just seen: new ones
        join the re-check, known ones move to the back of it."""
        if not invoices:
            return
        at = at or utcnow()
        org = check_org_id(org_id)
        async with self._store.write() as conn:
            for invoice_id, number in sorted(invoices.items()):
                stmt = self._store.upsert(
                    expense_invoices,
                    {
                        "org_id": org,
                        "invoice_id": invoice_id.lower(),
                        "document_number": number,
                        "checked_at": at,
                    },
                    ["org_id", "invoice_id"],
                    ["document_number", "checked_at"],
                )
                await conn.execute(stmt)

    async def due_for_check(self, org_id: str, limit: int) -> list[tuple[str, str]]:
        """``(invoice id, number)`` of the invoices checked longest ago, not known cancelled."""
        t = expense_invoices
        query = (
            select(t.c.invoice_id, t.c.document_number)
            .where(and_(t.c.org_id == check_org_id(org_id), t.c.canceled_at.is_(None)))
            .order_by(t.c.checked_at, t.c.invoice_id)
            .limit(limit)
        )
        async with self._store.read() as conn:
            return [(r.invoice_id, r.document_number) for r in await conn.execute(query)]

    async def mark_checked(
        self, org_id: str, invoice_ids: Iterable[str], *, at: datetime | None = None
    ) -> None:
        await self._update_invoices(org_id, invoice_ids, checked_at=at or utcnow())

    async def _update_invoices(
        self, org_id: str, invoice_ids: Iterable[str], *where: Any, **values: Any
    ) -> None:
        """Set ``values`` on these re-checked invoices (those that also match ``where``)."""
        t = expense_invoices
        ids = sorted({i.lower() for i in invoice_ids})
        if not ids:
            return
        stmt = (
            update(t)
            .where(and_(t.c.org_id == check_org_id(org_id), t.c.invoice_id.in_(ids), *where))
            .values(**values)
        )
        async with self._store.write() as conn:
            await conn.execute(stmt)

    async def unwithdrawn(
        self,
        org_id: str,
        *,
        invoice_ids: Iterable[str] = (),
        line_ids: Iterable[str] = (),
    ) -> list[PublishedLine]:
        """Published lines of these invoices (or with these ids) not withdrawn yet."""
        t = published_expenses
        invoices = sorted({i.lower() for i in invoice_ids})
        lines = sorted({i.lower() for i in line_ids})
        found: dict[str, PublishedLine] = {}
        async with self._store.read() as conn:
            for key, values in ((t.c.invoice_id, invoices), (t.c.line_id, lines)):
                for start in range(0, len(values), LOOKUP_CHUNK):
                    chunk = values[start : start + LOOKUP_CHUNK]
                    query = select(t).where(
                        and_(
                            t.c.org_id == check_org_id(org_id),
                            key.in_(chunk),
                            t.c.withdrawn_at.is_(None),
                        )
                    )
                    for row in await conn.execute(query):
                        found[row.line_id] = PublishedLine(
                            row.line_id,
                            row.event_id,
                            row.invoice_id,
                            row.document_number,
                            row.project_number,
                        )
        return [found[k] for k in sorted(found)]

    async def mark_withdrawn(
        self, org_id: str, lines: Iterable[tuple[str, str]], *, at: datetime | None = None
    ) -> None:
        """Remember ``(line id, withdrawal event id)`` pairs whose publish the broker confirmed
        (a line withdrawn already keeps its first record)."""
        t = published_expenses
        rows = [{"k_line": lid.lower(), "eid": eid} for lid, eid in lines]
        await self._update_lines(
            org_id,
            rows,
            t.c.withdrawn_at,
            withdrawn_at=at or utcnow(),
            withdrawn_event_id=bindparam("eid"),
        )

    async def _update_lines(
        self, org_id: str, rows: list[dict[str, Any]], unset: Column[Any], **values: Any
    ) -> None:
        """Set ``values`` on the published lines of ``rows`` (``k_line``: the line id) whose
        ``unset`` column is still empty, so a line's first record stays."""
        if not rows:
            return
        t = published_expenses
        stmt = (
            update(t)
            .where(
                and_(
                    t.c.org_id == check_org_id(org_id),
                    t.c.line_id == bindparam("k_line"),
                    unset.is_(None),
                )
            )
            .values(**values)
        )
        async with self._store.write() as conn:
            await conn.execute(stmt, rows)

    async def mark_canceled(
        self, org_id: str, invoice_ids: Iterable[str], *, at: datetime | None = None
    ) -> None:
        """These invoices are cancelled and their lines withdrawn: no more re-checks."""
        at = at or utcnow()
        await self._update_invoices(
            org_id,
            invoice_ids,
            expense_invoices.c.canceled_at.is_(None),
            canceled_at=at,
            checked_at=at,
        )


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


@dataclass(frozen=True)
class PublishedLine:
    """A published expense line as the store keeps it."""

    line_id: str
    event_id: str
    invoice_id: str | None = None
    document_number: str | None = None
    project_number: str | None = None


# ---------------------------------------------------------------------------------------------
# One round for one organization


class EventSink(Protocol):
    """Publishes ``(routing key, body, message id)`` and returns once the broker confirmed all
    (:class:`worker.messaging.publisher.Publisher` is one)."""

    async def events(self, items: Iterable[tuple[str, bytes, str]]) -> int: ...


class InvoiceSource(Protocol):
    """The BC calls the poll makes (:class:`worker.bc.BcConnection` is one)."""

    def purchase_invoices_since(
        self, from_date: date, watermark: datetime | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[PurchaseInvoicePage]: ...

    async def purchase_invoice_statuses(
        self, invoice_ids: Sequence[str]
    ) -> list[PurchaseInvoice]: ...


@dataclass
class PollResult:
    """What one round did for one organization (the CLI prints it)."""

    org: str
    status: str = "ok"  # ok, skipped, paused, failed
    reason: str | None = None  # why skipped, or the error code
    message: str | None = None
    published: int = 0
    already_published: int = 0  # expense lines seen again (overlap, re-read): not re-sent
    skipped_lines: int = 0  # lines that are not expenses (no project dimension, cancelled)
    pages: int = 0
    withdrawn: int = 0  # bc.expense.withdrawn sent (lines of invoices found cancelled)
    checked: int = 0  # imported invoices whose status was re-read for cancellations
    watermark: datetime | None = None
    event_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """What the round counted (its log line and its part of :meth:`to_dict`)."""
        names = ("published", "already_published", "skipped_lines", "pages", "withdrawn", "checked")
        return {name: getattr(self, name) for name in names}

    def to_dict(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            **self.counts(),
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


def read_start(state: PollState | None, config: IntegrationConfig) -> datetime | None:
    """Where this round reads from (``lastModifiedDateTime gt``): the watermark less the
    overlap, or ``None`` (everything since the from date) when there is no watermark or it was
    built with a later from date or another project dimension."""
    if state is None or state.watermark is None or config.expenses_from_date is None:
        return None
    same_dimension = (state.project_dimension or "") == (config.project_dimension or "").upper()
    from_date = config.expenses_from_date.isoformat()
    if not same_dimension or state.from_date is None or state.from_date > from_date:
        return None
    return state.watermark - READ_OVERLAP


async def poll_org(
    org: str,
    config: IntegrationConfig,
    bc: InvoiceSource,
    *,
    local_currency: str,
    state: ExpenseState,
    sink: EventSink,
    page_size: int | None = None,
    keep_alive: Callable[[], Awaitable[None]] | None = None,
    on_published: Callable[[int], None] | None = None,
    check_requests: int = CHECK_REQUESTS,
    check_batch: int = CHECK_BATCH,
) -> PollResult:
    """One round for one organization whose import is on; BC errors propagate to the caller.

    Per page: publish the new lines with confirms, then record their ids (and invoices); then
    withdraw the lines of the page's cancelled invoices the same way. After the last page the
    watermark moves to the newest ``lastModifiedDateTime`` seen. BC does not promise the pages
    in that order, so a watermark moved per page could pass an invoice of a later page; a round
    cut short re-reads from the old watermark instead, and the ids skip what was sent. Last,
    up to ``check_requests`` requests re-read older invoices for cancellations.
    """
    assert config.expenses_from_date is not None and config.project_dimension
    result = PollResult(org)
    previous = await state.get(org)
    start = read_start(previous, config)
    newest = previous.watermark if start is not None and previous is not None else None
    async for page in bc.purchase_invoices_since(
        config.expenses_from_date, start, page_size=page_size
    ):
        if keep_alive is not None:
            await keep_alive()
        result.pages += 1
        found = expenses_of_page(page, config, local_currency)
        result.skipped_lines += found.skipped
        fresh = await state.unpublished(org, [e.id for e in found.expenses])
        new = [e for e in found.expenses if e.id.lower() in fresh]
        seen = [e for e in found.expenses if e.id.lower() not in fresh]
        result.already_published += len(seen)
        if new:
            items = [
                (
                    EVENT_TYPE,
                    build(EVENT_TYPE, org, ExpenseImportedData(expense=e), id_=event_id(org, e.id)),
                    event_id(org, e.id),
                )
                for e in new
            ]
            await sink.events(items)
            result.published += len(items)
            result.event_ids.extend(mid for _, _, mid in items)
            if on_published is not None:
                on_published(len(items))
            await state.mark_published(
                org, [_published(e, mid, found) for e, (_, _, mid) in zip(new, items, strict=True)]
            )
        if seen:  # lines published before step 6 get their invoice named
            await state.fill_invoices(org, [_published(e, "", found) for e in seen])
        await state.record_invoices(
            org, {inv.id: inv.number for inv in found.invoice_of.values() if inv.id}
        )
        if found.canceled:
            result.withdrawn += await withdraw(
                org, found.canceled, state=state, sink=sink, config=config
            )
        if page.last_modified is not None and (newest is None or page.last_modified > newest):
            newest = page.last_modified
    await state.save_watermark(
        org, newest, from_date=config.expenses_from_date, project_dimension=config.project_dimension
    )
    result.watermark = newest
    for _ in range(max(0, check_requests)):
        due = await state.due_for_check(org, check_batch)
        if not due:
            break
        if keep_alive is not None:
            await keep_alive()
        withdrawn, checked = await _check_invoices(org, due, bc=bc, state=state, sink=sink)
        result.withdrawn += withdrawn
        result.checked += checked
    log.info(
        "expenses.polled",
        org=org,
        **result.counts(),
        watermark=newest.isoformat() if newest else None,
    )
    return result


def _published(expense: Expense, mid: str, found: PageExpenses) -> PublishedLine:
    invoice = found.invoice_of.get(expense.id)
    return PublishedLine(
        expense.id,
        mid,
        invoice.id if invoice else None,
        expense.document_number,
        expense.project_number,
    )


async def _check_invoices(
    org: str,
    due: Sequence[tuple[str, str]],
    *,
    bc: InvoiceSource,
    state: ExpenseState,
    sink: EventSink,
) -> tuple[int, int]:
    """Re-read the status of ``due`` invoices (one BC request); withdraw the cancelled ones'
    lines. An invoice BC no longer returns (deleted after posting, which BC allows for printed
    documents) is left as it is: its entries stay in the books. Returns (withdrawn, checked)."""
    current = await bc.purchase_invoice_statuses([invoice_id for invoice_id, _ in due])
    canceled = [inv for inv in current if inv.is_canceled]
    withdrawn = await withdraw(org, canceled, state=state, sink=sink) if canceled else 0
    gone = {i.lower() for i, _ in due} - {inv.id.lower() for inv in current}
    if gone:
        log.warning("expenses.invoices_not_found", org=org, invoices=sorted(gone))
    await state.mark_checked(org, [invoice_id for invoice_id, _ in due])
    return withdrawn, len(due)


async def withdraw(
    org: str,
    invoices: Sequence[PurchaseInvoice],
    *,
    state: ExpenseState,
    sink: EventSink,
    config: ExpenseSettings | None = None,
    seen_at: datetime | None = None,
) -> int:
    """Publish ``bc.expense.withdrawn`` for every line imported from these cancelled invoices
    and not withdrawn yet (confirmed by the broker, then recorded); returns how many.

    Lines are found by invoice id and, for lines published before the store kept the invoice,
    by the line ids the invoices carry (the change read expands them).
    """
    seen_at = seen_at or utcnow()
    line_ids = [line.id for inv in invoices for line in inv.lines if line.id]
    lines = await state.unwithdrawn(org, invoice_ids=[i.id for i in invoices], line_ids=line_ids)
    by_line = {line.id.lower(): inv for inv in invoices for line in inv.lines if line.id}
    by_id = {inv.id.lower(): inv for inv in invoices}
    items: list[tuple[str, bytes, str]] = []
    withdrawn: list[tuple[str, str]] = []  # (line id, withdrawal event id)
    for line in lines:
        invoice = by_id.get((line.invoice_id or "").lower()) or by_line.get(line.line_id)
        if invoice is None:
            continue
        project = line.project_number
        if project is None and config is not None and config.project_dimension:
            bc_line = next((x for x in invoice.lines if x.id.lower() == line.line_id), None)
            project = project_code(bc_line, config.project_dimension) if bc_line else None
        mid = withdrawn_event_id(org, line.line_id)
        data = ExpenseWithdrawnData(
            expense=ExpenseWithdrawal(
                id=line.line_id,
                imported_event_id=line.event_id,
                project_number=project,
                document_number=line.document_number or invoice.number,
                bc_invoice_id=invoice.id,
                reason=WITHDRAW_REASON,
                seen_at=seen_at,
            )
        )
        items.append((WITHDRAWN_TYPE, build(WITHDRAWN_TYPE, org, data, id_=mid), mid))
        withdrawn.append((line.line_id, mid))
    if items:
        await sink.events(items)
        await state.mark_withdrawn(org, withdrawn)
        log.info(
            "expenses.withdrawn",
            org=org,
            withdrawn=len(items),
            invoices=sorted({inv.number for inv in invoices}),
        )
    await state.mark_canceled(org, [inv.id for inv in invoices if inv.id])
    return len(items)
