"""Expense import (DESIGN §7): posted BC purchase-invoice lines on a project become
``bc.expense.imported`` events for Moment.

- :func:`expense_of` is the pure transform of one line (plus its invoice header).
- :func:`poll_org` runs one round for one organization: read the invoices changed since the
  watermark (``postingDate ge`` the from date), publish one event per line not published before,
  with confirms, remember the line ids, then move the watermark.
- :class:`ExpenseState` is the repository of the ``expense_polls`` and ``published_expenses``
  tables (migration step 3).

Exactly once as far as Moment can tell: the event id is derived from the organization and the BC
line id, and the published line ids are kept per organization, so a watermark reset, an earlier
from date, the read overlap or a replica racing us never re-sends a line; a crash between a
publish and its bookkeeping re-sends the same ids at most.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import ValidationError
from sqlalchemy import Column, Integer, String, Table, Text, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from worker.bc.models import PurchaseInvoice, PurchaseInvoiceLine, PurchaseInvoicePage
from worker.config.migrations import UtcDateTime, metadata
from worker.config.model import IntegrationConfig
from worker.config.store import Store, check_org_id, utcnow
from worker.events.envelope import build
from worker.events.models import Expense, ExpenseImportedData
from worker.log import redact_text

log = structlog.get_logger(__name__)

EVENT_TYPE = "bc.expense.imported"
OBJECT_TYPE = "expense"  # sync_outcomes / FailureReport object type
# Event ids are uuid5(org + line id) in this namespace: the same line always gets the same id.
EXPENSE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bc-sync:bc.expense.imported")
# Each read starts this much before the watermark: invoices committed late with an older
# lastModifiedDateTime, and ties at a page boundary, are not missed (the ids dedupe them).
READ_OVERLAP = timedelta(minutes=5)
LOOKUP_CHUNK = 500  # line ids per "already published?" query

expense_polls = Table(
    "expense_polls",
    metadata,
    Column("org_id", String(100), primary_key=True),
    # Newest lastModifiedDateTime of a round whose lines were all published and confirmed.
    Column("watermark", UtcDateTime),
    # What the watermark was built with: an earlier from date or another project dimension
    # invalidates it (the ids keep the re-read from re-sending).
    Column("from_date", String(10)),
    Column("project_dimension", String(20)),
    Column("last_poll_at", UtcDateTime),
    Column("last_success_at", UtcDateTime),
    Column("last_error_code", String(100)),
    Column("last_error_message", Text),
    Column("paused_at", UtcDateTime),
    Column("paused_version", Integer),  # config version that was paused: a save resumes
)

published_expenses = Table(
    "published_expenses",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("line_id", String(100), primary_key=True),
    Column("event_id", String(100), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
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

    Not one: the invoice is a draft, the line has no id, or it has no value of the project
    dimension. A line with odd numbers (no amount) is still an expense: Moment decides.
    """
    if invoice.is_draft or not line.id or not config.project_dimension:
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
        # BC leaves the currency blank for the company's local currency.
        currency_code=(invoice.currency_code or local_currency).strip().upper(),
        vendor_number=invoice.vendor_number or None,
        vendor_name=invoice.vendor_name or None,
        document_number=invoice.number,
        vendor_invoice_number=invoice.vendor_invoice_number or None,
    )


@dataclass(frozen=True)
class PageExpenses:
    """What one page holds for Moment: the expenses, and the lines that are not expenses."""

    expenses: list[Expense]
    skipped: int


def expenses_of_page(
    page: PurchaseInvoicePage, config: ExpenseSettings, local_currency: str
) -> PageExpenses:
    """The expenses of a page's posted invoices (posted on or after the from date)."""
    expenses: list[Expense] = []
    skipped = 0
    since = config.expenses_from_date
    for invoice in page.invoices:
        if since is not None and invoice.posting_date is not None and invoice.posting_date < since:
            skipped += len(invoice.lines)  # BC filters on it already; never trust one answer
            continue
        for line in invoice.lines:
            try:
                expense = expense_of(invoice, line, config, local_currency)
            except ValidationError as exc:
                # Outside the event contract (BC sent something absurd): Moment cannot take it.
                log.error(
                    "expense_line_unusable",
                    document_number=invoice.number,
                    line_id=line.id,
                    error=str(exc).splitlines()[0],
                )
                expense = None
            if expense is None:
                skipped += 1
            else:
                expenses.append(expense)
    return PageExpenses(expenses, skipped)


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
        await self._upsert(
            org_id,
            {
                "watermark": watermark,
                "from_date": from_date.isoformat(),
                "project_dimension": project_dimension.upper(),
                "last_poll_at": at,
                "last_success_at": at,
                "last_error_code": None,
                "last_error_message": None,
                "paused_at": None,
                "paused_version": None,
            },
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

    async def mark_published(self, org_id: str, lines: Iterable[tuple[str, str]]) -> None:
        """Remember ``(line id, event id)`` pairs whose publish the broker confirmed."""
        now = utcnow()
        rows = [
            {
                "org_id": check_org_id(org_id),
                "line_id": lid.lower(),
                "event_id": eid,
                "published_at": now,
            }
            for lid, eid in lines
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


# ---------------------------------------------------------------------------------------------
# One round for one organization


class EventSink(Protocol):
    """Publishes ``(routing key, body, message id)`` and returns once the broker confirmed all
    (:class:`worker.messaging.publisher.Publisher` is one)."""

    async def events(self, items: Iterable[tuple[str, bytes, str]]) -> int: ...


class InvoiceSource(Protocol):
    """The BC call the poll makes (:class:`worker.bc.BcConnection` is one)."""

    def purchase_invoices_since(
        self, from_date: date, watermark: datetime | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[PurchaseInvoicePage]: ...


@dataclass
class PollResult:
    """What one round did for one organization (the CLI prints it)."""

    org: str
    status: str = "ok"  # ok, skipped, paused, failed
    reason: str | None = None  # why skipped, or the error code
    message: str | None = None
    published: int = 0
    already_published: int = 0  # expense lines seen again (overlap, re-read): not re-sent
    skipped_lines: int = 0  # lines that are not expenses (no project dimension value)
    pages: int = 0
    watermark: datetime | None = None
    event_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "published": self.published,
            "already_published": self.already_published,
            "skipped_lines": self.skipped_lines,
            "pages": self.pages,
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
) -> PollResult:
    """One round for one organization whose import is on; BC errors propagate to the caller.

    Per page: publish the new lines with confirms, then record their ids. After the last page
    the watermark moves to the newest ``lastModifiedDateTime`` seen. BC does not promise the
    pages in that order, so a watermark moved per page could pass an invoice of a later page;
    a round cut short re-reads from the old watermark instead, and the ids skip what was sent.
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
        result.already_published += len(found.expenses) - len(new)
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
                org, [(e.id, mid) for e, (_, _, mid) in zip(new, items, strict=True)]
            )
        if page.last_modified is not None and (newest is None or page.last_modified > newest):
            newest = page.last_modified
    await state.save_watermark(
        org, newest, from_date=config.expenses_from_date, project_dimension=config.project_dimension
    )
    result.watermark = newest
    log.info(
        "expenses_polled",
        org=org,
        published=result.published,
        already_published=result.already_published,
        skipped_lines=result.skipped_lines,
        pages=result.pages,
        watermark=newest.isoformat() if newest else None,
    )
    return result
