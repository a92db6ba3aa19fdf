"""Month-end reconciliation of Moment against Business Central (issue 19, DESIGN §2: ops).

For a period, every invoice and credit note Moment sent (the sync ledger, by document date)
against BC's posted sales invoices and credit memos (read by posting date, then the ones not
found by external document number). Read-only in BC; every request goes through the BC client,
whose limiter keeps the organization's BC budget.

:func:`classify` is the pure matching; :class:`Reconciler` reads both sides and calls it. Each
row has a ``class``:

- ``missing_in_bc``: Moment sent it, BC has no posted document with its number (the ledger's
  state and last error say why);
- ``duplicated_in_bc``: BC holds two or more posted documents for one Moment number;
- ``different``: in both, but the totals (excluding or including tax), the customer or the
  posting date differ, or BC's document is not the one the ledger recorded, or the ledger does
  not call the document synced (``differences`` names which);
- ``unknown_in_bc``: a BC document whose external document number looks like the
  organization's Moment numbers (:class:`NumberPattern`) but that Moment never sent;
- ``matched``: in both and equal.

Amounts are decimal text with two decimals, credit notes positive (as BC shows credit memos).
Moment's events carry no tax amounts: a document's total including tax on the Moment side is
what BC answered when bc-sync exported it (kept in the ledger), so it is compared when known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import structlog

from worker.bc import BcConnection, BcHub
from worker.bc.models import PostedDocument
from worker.config.model import IntegrationConfig
from worker.config.settings import Settings
from worker.store import ConfigCache, Store
from worker.sync.context import credentials_of
from worker.sync.ledger import LedgerRepository

log = structlog.get_logger(__name__)

RowClass = Literal["missing_in_bc", "duplicated_in_bc", "different", "unknown_in_bc", "matched"]
CLASSES: tuple[RowClass, ...] = (
    "missing_in_bc",
    "duplicated_in_bc",
    "different",
    "unknown_in_bc",
    "matched",
)
DocType = Literal["invoice", "credit_note"]
PAGE_SIZE = 1000  # documents per BC request while reading a period
CENT = Decimal("0.01")
MAX_PERIOD_DAYS = 400  # a longer period is a mistake (and a long read of BC)


class ReconcileError(ValueError):
    """Bad input (period, organization) or an organization without a BC configuration."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_period(from_text: str | None, to_text: str | None) -> tuple[date, date]:
    """``from``/``to`` as ISO dates, ``from`` <= ``to``, at most :data:`MAX_PERIOD_DAYS`."""
    dates: list[date] = []
    for name, text in (("from", from_text), ("to", to_text)):
        if not text:
            raise ReconcileError(name, f"{name} is required (a date, e.g. 2026-11-01)")
        try:
            dates.append(date.fromisoformat(text.strip()))
        except ValueError:
            raise ReconcileError(name, f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
    start, end = dates
    if start > end:
        raise ReconcileError("to", f"to ({end}) is before from ({start})")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ReconcileError("to", f"the period is longer than {MAX_PERIOD_DAYS} days")
    return start, end


def _amount(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value)).quantize(CENT)
    except InvalidOperation:
        return None


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


# --- the organization's Moment number pattern ---------------------------------------------------


def number_shape(number: str) -> str:
    """A number's shape: each run of digits becomes ``#`` (``INV-2026-0012`` → ``INV-#-#``)."""
    return re.sub(r"[0-9]+", "#", number.strip().upper())


@dataclass(frozen=True)
class NumberPattern:
    """The shapes of the organization's Moment numbers, learned from the ledger: a BC external
    document number "looks like Moment's" when it has one of them and at least one digit."""

    shapes: frozenset[str]

    @classmethod
    def learn(cls, numbers: Iterable[str]) -> NumberPattern:
        return cls(frozenset(number_shape(n) for n in numbers if any(c.isdigit() for c in n)))

    def matches(self, number: str) -> bool:
        return "#" in number_shape(number) and number_shape(number) in self.shapes

    def describe(self) -> list[str]:
        return sorted(self.shapes)


# --- the two sides --------------------------------------------------------------------------


@dataclass(frozen=True)
class MomentDocument:
    """An invoice or credit note as the ledger keeps it."""

    type: DocType
    moment_id: str
    number: str  # upper-cased: BC's external document number
    document_date: str | None
    customer_number: str | None
    currency_code: str | None
    total_excluding_tax: Decimal | None
    total_including_tax: Decimal | None
    state: str
    bc_id: str | None = None
    bc_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MomentDocument:
        return cls(
            type="credit_note" if row["object_type"] == "credit_note" else "invoice",
            moment_id=str(row["moment_id"]),
            number=str(row["moment_number"] or row["moment_id"]).strip().upper(),
            document_date=row.get("document_date"),
            customer_number=row.get("customer_number"),
            currency_code=row.get("currency_code"),
            total_excluding_tax=_amount(row.get("total_excluding_tax")),
            total_including_tax=_amount(row.get("total_including_tax")),
            state=str(row["state"]),
            bc_id=row.get("bc_id"),
            bc_number=row.get("bc_number"),
            error_code=row.get("last_error_code"),
            error_message=row.get("last_error_message"),
        )


@dataclass(frozen=True)
class BcDocument:
    """A posted sales invoice or credit memo as BC shows it."""

    type: DocType
    doc: PostedDocument

    @property
    def key(self) -> tuple[DocType, str]:
        return self.type, self.doc.external_document_number.strip().upper()


# --- the rows ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One reconciliation row (:meth:`to_dict` is its JSON/API/CSV shape)."""

    cls: RowClass
    type: DocType
    moment_number: str | None
    moment_id: str | None = None
    bc: list[PostedDocument] = field(default_factory=list)
    moment: MomentDocument | None = None
    differences: list[str] = field(default_factory=list)
    local_currency: str = ""

    @property
    def currency(self) -> str:
        code = (self.moment.currency_code if self.moment else None) or (
            self.bc[0].currency_code if self.bc else ""
        )
        return (code or self.local_currency).strip().upper()

    def bc_total(self, name: Literal["excluding", "including"]) -> Decimal | None:
        if not self.bc:
            return None
        values = [
            d.total_amount_excluding_tax if name == "excluding" else d.total_amount_including_tax
            for d in self.bc
        ]
        return sum(values, Decimal(0)).quantize(CENT)

    def to_dict(self) -> dict[str, Any]:
        m = self.moment
        return {
            "class": self.cls,
            "type": self.type,
            "moment_number": self.moment_number,
            "moment_id": self.moment_id,
            "bc_numbers": [d.number for d in self.bc],
            "bc_ids": [d.id for d in self.bc],
            "currency_code": self.currency,
            "moment_total_excluding_tax": _text(m.total_excluding_tax) if m else None,
            "moment_total_including_tax": _text(m.total_including_tax) if m else None,
            "bc_total_excluding_tax": _text(self.bc_total("excluding")),
            "bc_total_including_tax": _text(self.bc_total("including")),
            "moment_customer_number": m.customer_number if m else None,
            "bc_customer_numbers": sorted({d.customer_number for d in self.bc}),
            "document_date": m.document_date if m else None,
            "bc_posting_dates": [
                d.posting_date.isoformat() if d.posting_date else None for d in self.bc
            ],
            "differences": self.differences,
            "ledger_state": m.state if m else None,
            "ledger_error_code": m.error_code if m and self.cls == "missing_in_bc" else None,
            "ledger_error_message": (
                m.error_message if m and self.cls == "missing_in_bc" else None
            ),
        }


CSV_COLUMNS = (
    "class",
    "type",
    "moment_number",
    "moment_id",
    "bc_numbers",
    "bc_ids",
    "currency_code",
    "moment_total_excluding_tax",
    "bc_total_excluding_tax",
    "moment_total_including_tax",
    "bc_total_including_tax",
    "moment_customer_number",
    "bc_customer_numbers",
    "document_date",
    "bc_posting_dates",
    "differences",
    "ledger_state",
    "ledger_error_code",
    "ledger_error_message",
)


def csv_row(row: Mapping[str, Any]) -> list[str]:
    """A row's CSV cells: lists joined with ``;``, absent values empty."""
    out: list[str] = []
    for name in CSV_COLUMNS:
        value = row.get(name)
        if isinstance(value, list):
            out.append(";".join(str(v) for v in value if v is not None))
        else:
            out.append("" if value is None else str(value))
    return out


# --- the pure matching --------------------------------------------------------------------------


def compare(moment: MomentDocument, bc: PostedDocument, period: tuple[date, date]) -> list[str]:
    """What differs between a Moment document and its one BC document (empty: matched)."""
    differences: list[str] = []
    if (
        moment.total_excluding_tax is not None
        and moment.total_excluding_tax != bc.total_amount_excluding_tax.quantize(CENT)
    ):
        differences.append("total_excluding_tax")
    if (
        moment.total_including_tax is not None
        and moment.total_including_tax != bc.total_amount_including_tax.quantize(CENT)
    ):
        differences.append("total_including_tax")
    if (
        moment.customer_number
        and moment.customer_number.upper() != bc.customer_number.strip().upper()
    ):
        differences.append("customer")
    if moment.bc_number and moment.bc_number.upper() != bc.number.strip().upper():
        differences.append("bc_number")  # BC holds another document than the one exported
    if moment.state != "synced":
        # BC shows a document the ledger does not call synced: e.g. a released, unposted
        # invoice (status Open, like a posted one: bc-api.md Corrections 4) still waiting.
        differences.append("ledger_state")
    if (bc.posting_date is not None and not (period[0] <= bc.posting_date <= period[1])) or (
        moment.document_date
        and bc.posting_date is not None
        and moment.document_date != bc.posting_date.isoformat()
    ):
        differences.append("posting_date")
    return differences


def classify(
    moment_docs: Sequence[MomentDocument],
    bc_docs: Sequence[BcDocument],
    *,
    pattern: NumberPattern,
    period: tuple[date, date],
    sent_elsewhere: Mapping[tuple[DocType, str], MomentDocument] | None = None,
    local_currency: str = "",
) -> list[Row]:
    """The rows of a period, pure: Moment's documents (the ledger, in the period) against BC's
    (posted in the period, plus the ones found by number). ``sent_elsewhere``: documents
    Moment sent with a date outside the period whose number BC has in it (``different``, on
    the posting date, not ``unknown_in_bc``)."""
    by_key: dict[tuple[DocType, str], list[PostedDocument]] = {}
    seen_ids: set[tuple[DocType, str]] = set()
    for b in bc_docs:
        if (b.type, b.doc.id) in seen_ids:
            continue  # read twice (by date and by number)
        seen_ids.add((b.type, b.doc.id))
        by_key.setdefault(b.key, []).append(b.doc)
    rows: list[Row] = []
    claimed: set[tuple[DocType, str]] = set()
    for m in moment_docs:
        key = (m.type, m.number)
        found = by_key.get(key, [])
        claimed.add(key)
        row = Row("matched", m.type, m.number, m.moment_id, list(found), m, [], local_currency)
        if not found:
            row.cls = "missing_in_bc"
        elif len(found) > 1:
            row.cls = "duplicated_in_bc"
        else:
            row.differences = compare(m, found[0], period)
            row.cls = "different" if row.differences else "matched"
        rows.append(row)
    for key, found in sorted(by_key.items()):
        if key in claimed:
            continue
        other = (sent_elsewhere or {}).get(key)
        if other is not None:
            row = Row("different", key[0], other.number, other.moment_id, list(found), other)
            row.local_currency = local_currency
            if len(found) > 1:
                row.cls = "duplicated_in_bc"
            else:
                row.differences = compare(other, found[0], period) or ["posting_date"]
            rows.append(row)
        elif pattern.matches(key[1]):
            rows.append(
                Row("unknown_in_bc", key[0], key[1], None, list(found), None, [], local_currency)
            )
    order = {c: i for i, c in enumerate(CLASSES)}
    rows.sort(key=lambda r: (order[r.cls], r.type, r.moment_number or ""))
    return rows


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts and sums per class and currency, net as in the books: a credit note counts
    negative. Moment's totals where Moment sent the document, BC's for ``unknown_in_bc``; the
    total including tax only over the rows that have one."""
    out: dict[str, Any] = {}
    for cls in CLASSES:
        mine = [r for r in rows if r.cls == cls]
        currencies: dict[str, dict[str, Any]] = {}
        for r in mine:
            if r.moment is not None:
                excl, incl = r.moment.total_excluding_tax, r.moment.total_including_tax
                if excl is None:
                    excl = r.bc_total("excluding")
            else:
                excl, incl = r.bc_total("excluding"), r.bc_total("including")
            sign = -1 if r.type == "credit_note" else 1
            c = currencies.setdefault(
                r.currency or "?",
                {
                    "count": 0,
                    "invoices": 0,
                    "credit_notes": 0,
                    "total_excluding_tax": Decimal(0),
                    "total_including_tax": None,
                },
            )
            c["count"] += 1
            c["credit_notes" if sign < 0 else "invoices"] += 1
            c["total_excluding_tax"] += sign * (excl or Decimal(0))
            if incl is not None:
                c["total_including_tax"] = (c["total_including_tax"] or Decimal(0)) + sign * incl
        out[cls] = {
            "count": len(mine),
            "currencies": {
                code: {
                    **c,
                    "total_excluding_tax": _text(c["total_excluding_tax"]),
                    "total_including_tax": _text(c["total_including_tax"]),
                }
                for code, c in sorted(currencies.items())
            },
        }
    return out


# --- the use case --------------------------------------------------------------------------------


@dataclass
class Report:
    """A reconciliation: the period, the summary, the rows, and what it cost in BC."""

    org: str
    period: tuple[date, date]
    rows: list[Row]
    bc_requests: int
    bc_documents_read: int
    pattern: NumberPattern
    company: str = ""

    def summary(self) -> dict[str, Any]:
        return summarize(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "organization": self.org,
            "company": self.company,
            "from": self.period[0].isoformat(),
            "to": self.period[1].isoformat(),
            "summary": self.summary(),
            "bc_requests": self.bc_requests,
            "bc_documents_read": self.bc_documents_read,
            "moment_number_shapes": self.pattern.describe(),
            "rows": [r.to_dict() for r in self.rows],
        }


Progress = Callable[[str, int, int], None]  # (what, documents read so far, requests so far)


class Reconciler:
    """Reads the ledger and BC for one organization and period, and classifies."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        configs: ConfigCache,
        connect: Callable[[IntegrationConfig], BcConnection],
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.settings = settings
        self.ledger = LedgerRepository(store)
        self.configs = configs
        self._connect = connect
        self.page_size = page_size

    @classmethod
    def with_hub(
        cls, settings: Settings, store: Store, configs: ConfigCache, hub: BcHub, **kw: Any
    ) -> Reconciler:
        """Connections from the process's BC hub (read-only use)."""
        return cls(
            settings,
            store,
            configs,
            lambda config: hub.connection(credentials_of(config, settings)),
            **kw,
        )

    async def run(
        self, org: str, period: tuple[date, date], *, progress: Progress | None = None
    ) -> Report:
        config = await self.configs.config(org)
        if config is None:
            raise ReconcileError("org", f"organization {org} has no Business Central integration")
        bc = self._connect(config)
        start, end = period
        moment_docs = [
            MomentDocument.from_row(r)
            for r in await self.ledger.documents(org, start.isoformat(), end.isoformat())
        ]
        pattern = NumberPattern.learn(await self.ledger.document_numbers(org))
        requests = 0
        read: list[BcDocument] = []

        def tick(what: str) -> None:
            if progress is not None:
                progress(what, len(read), requests)

        for credit_memos, type_ in ((False, "invoice"), (True, "credit_note")):
            async for page in bc.posted_documents(
                start, end, credit_memos=credit_memos, page_size=self.page_size
            ):
                requests += 1
                read.extend(BcDocument(type_, d) for d in page)  # type: ignore[arg-type]
                tick("invoices" if not credit_memos else "credit memos")
        # Moment documents not posted in the period: look them up by number (any date).
        keys = {b.key for b in read}
        for credit_memos, type_ in ((False, "invoice"), (True, "credit_note")):
            absent = [
                m.number for m in moment_docs if m.type == type_ and (type_, m.number) not in keys
            ]
            if not absent:
                continue
            async for page in bc.posted_documents_by_number(absent, credit_memos=credit_memos):
                requests += 1
                read.extend(BcDocument(type_, d) for d in page)  # type: ignore[arg-type]
                tick("by number")
        # BC documents in the period that Moment sent with a date outside it.
        ours = {(m.type, m.number) for m in moment_docs}
        strangers = {b.key[1] for b in read if b.key not in ours and pattern.matches(b.key[1])}
        elsewhere: dict[tuple[DocType, str], MomentDocument] = {}
        if strangers:
            for r in await self.ledger.documents_by_number(org, sorted(strangers)):
                m = MomentDocument.from_row(r)
                elsewhere[(m.type, m.number)] = m
        # A document in the local currency that never reached BC has no currency code.
        local = (await bc.general_ledger_setup()).local_currency_code
        requests += 1
        rows = classify(
            moment_docs,
            read,
            pattern=pattern,
            period=period,
            sent_elsewhere=elsewhere,
            local_currency=local,
        )
        log.info(
            "reconcile.done",
            org=org,
            rows=len(rows),
            bc_requests=requests,
            bc_documents=len(read),
        )
        return Report(org, period, rows, requests, len(read), pattern, config.company_name)
