"""Payments of posted sales invoices: the customer ledger entry behind each posted invoice, the
amounts applied to it (payments, applied credit memos) and reversing one, as BC does.

What BC does, read in [BCApps] (29.0):

- ``remainingAmount`` is computed when the invoice is read, never stored on the row:
  ``APIV2SalesInvoices.Page.al`` ``GetRemainingAmount()`` gives a draft its "Amount Including
  VAT", a posted ``Canceled`` invoice 0, and any other posted invoice
  ``SalesInvoiceHeader.GetRemainingAmount()`` (``Sales/History/SalesInvoiceHeader.Table.al``):
  the "Remaining Amount" of its customer ledger entry, a FlowField summing the detailed ledger
  entries (the invoice amount, less every payment or credit memo applied to it).
- The status of a posted invoice: ``SalesInvoiceAggregator.Codeunit.al``
  ``SetStatusOptionFromSalesInvoiceHeader``: Canceled, else Corrective, else ``Paid`` when the
  header's "Closed" FlowField is set (no open ledger entry: fully paid, "also selected if a
  credit memo for the remaining amount has been applied"), else ``Open``.
- Every change of a customer ledger entry runs ``UpdateStatusIfChanged``, which modifies the
  aggregate row only when the status changed; the row's ``OnModify``
  (``SalesInvoiceEntityAggregate.Table.al``) sets "Last Modified Date Time". So a payment that
  closes the entry (Paid), or a reversal that reopens it (Open), moves ``lastModifiedDateTime``
  and the ETag; a partial payment, or reversing one on a still-open invoice, changes nothing
  on the row.

Left open by the AL, and chosen the stricter way: an amount larger than what remains is
refused (BC would close the invoice and leave the rest open on the payment's own entry, which
the emulator does not model), and only posted Open/Paid invoices take payments.

A credit memo applied to an invoice is one more applied amount (``kind="credit_memo"``): the
credit-memo export calls :func:`apply` with it when it posts one applied to an invoice.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import documents as docs
from .entities import norm_number, now_iso, parse_datetime
from .errors import BCError, dialog
from .store import Company, Row

if TYPE_CHECKING:
    from .app import Emulator

PAID = "Paid"
CANCELED = "Canceled"
CORRECTIVE = "Corrective"
KINDS = ("payment", "credit_memo")
CENT = Decimal("0.01")


@dataclass
class Application:
    """One amount applied to a posted invoice's ledger entry (a detailed ledger entry)."""

    id: str
    invoice_id: str
    kind: str  # payment | credit_memo
    amount: Decimal
    reference: str
    applied_at: str
    reversed_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "invoiceId": self.invoice_id,
            "kind": self.kind,
            "amount": norm_number(float(self.amount)),
            "reference": self.reference,
            "appliedAt": self.applied_at,
            "reversedAt": self.reversed_at,
        }


# The ledger lives beside the company's tables, not in the invoice row: a payment writes ledger
# entries, not the aggregate row (its ETag stays).
_LEDGERS: weakref.WeakKeyDictionary[Company, dict[str, list[Application]]] = (
    weakref.WeakKeyDictionary()
)


def _ledger(company: Company) -> dict[str, list[Application]]:
    ledger = _LEDGERS.get(company)
    if ledger is None:
        ledger = _LEDGERS[company] = {}
    return ledger


def applied(company: Company, invoice_id: str) -> Decimal:
    """What is applied to the invoice and not reversed."""
    entries = _ledger(company).get(invoice_id, [])
    return sum((a.amount for a in entries if a.reversed_at is None), Decimal(0))


def _total(row: Row) -> Decimal:
    return Decimal(str(row.data.get("totalAmountIncludingTax", 0) or 0)).quantize(CENT)


def remaining(company: Company, row: Row) -> Decimal:
    """``GetRemainingAmount()`` of APIV2SalesInvoices.Page.al, as a decimal."""
    if not row.data.get("_posted"):
        return _total(row)  # a draft: its Amount Including VAT
    if row.data.get("status") == CANCELED:
        return Decimal(0)
    return _total(row) - applied(company, row.id)


def remaining_amount(company: Company, row: Row) -> float | int:
    """The ``remainingAmount`` the API shows for this invoice, computed now."""
    return norm_number(float(remaining(company, row)))


def _status_after_change(company: Company, row: Row) -> str:
    """SetStatusOptionFromSalesInvoiceHeader: Canceled and Corrective stay, Paid when closed."""
    current = str(row.data.get("status"))
    if current in (CANCELED, CORRECTIVE):
        return current
    return PAID if remaining(company, row) <= 0 else docs.OPEN


def _after_change(company: Company, row: Row) -> None:
    """UpdateStatusIfChanged: the row is modified (lastModifiedDateTime, ETag) only when its
    status changes."""
    status = _status_after_change(company, row)
    if status != row.data.get("status"):
        company.sales_invoices.update(row, {"status": status})


def find_invoice(company: Company, ident: str) -> Row:
    """A sales invoice by id or by (posted) number."""
    row = company.sales_invoices.get(ident.lower()) or company.sales_invoices.find(
        "number", ident.upper()
    )
    if row is None:
        raise LookupError(f"no sales invoice {ident!r}")
    return row


def apply(
    company: Company, row: Row, amount: Decimal | float | str, *, kind: str, reference: str = ""
) -> Application:
    """Apply a payment or a credit memo's amount to a posted invoice."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    try:
        value = Decimal(str(amount)).quantize(CENT)
    except ArithmeticError:
        raise ValueError(f"amount must be a number, got {amount!r}") from None
    if not row.data.get("_posted") or row.data.get("status") not in (docs.OPEN, PAID):
        raise dialog("Only an open posted invoice can be applied to.")  # approximated text
    if value <= 0:
        raise dialog("The amount to apply must be positive.")  # approximated text
    left = remaining(company, row)
    if value > left:
        raise dialog(  # approximated text; stricter than BC (see the module docstring)
            f"The amount to apply ({value}) is larger than the remaining amount ({left})."
        )
    entry = Application(
        id=str(uuid.uuid4()),
        invoice_id=row.id,
        kind=kind,
        amount=value,
        reference=reference,
        applied_at=now_iso(),
    )
    _ledger(company).setdefault(row.id, []).append(entry)
    _after_change(company, row)
    return entry


def reverse(company: Company, application_id: str) -> tuple[Application, Row]:
    """Unapply and reverse one applied amount (BC: "Unapply Entries", then "Reverse")."""
    for invoice_id, entries in _ledger(company).items():
        for entry in entries:
            if entry.id == application_id.lower():
                if entry.reversed_at is not None:
                    raise dialog("The entry has already been reversed.")  # approximated text
                row = company.sales_invoices.get(invoice_id)
                if row is None:
                    raise LookupError(f"invoice {invoice_id} of application is gone")
                entry.reversed_at = now_iso()
                _after_change(company, row)
                return entry, row
    raise LookupError(f"no applied amount {application_id!r}")


def applications(company: Company, invoice_id: str) -> list[Application]:
    return list(_ledger(company).get(invoice_id, []))


def post_by_hand(company: Company, body: dict[str, Any]) -> Row:
    """A sales invoice created and posted in BC by a person: the API's own rules, one
    transaction (``body`` is a salesInvoices POST body with ``salesInvoiceLines``)."""
    from .bc_api import SalesInvoicesColl

    world = company.env.tenant.world
    with world.tx.transaction():
        row = SalesInvoicesColl(company).create(body)
        docs.post_sales_invoice(company, row)
    return row


# ---- control API (/_emulator/...) ----------------------------------------------------------------


def _state(company: Company, row: Row) -> dict[str, Any]:
    from .bc_api import SalesInvoicesColl

    rendered = SalesInvoicesColl(company).render(row)
    return {
        "id": row.id,
        "number": row.data["number"],
        "status": rendered["status"],
        "remainingAmount": rendered["remainingAmount"],
        "totalAmountIncludingTax": rendered["totalAmountIncludingTax"],
        "lastModifiedDateTime": rendered["lastModifiedDateTime"],
        "etag": row.etag,
        "applications": [a.as_dict() for a in applications(company, row.id)],
    }


def add_payment_routes(app: web.Application, emu: Emulator) -> None:
    """``POST sales_invoices`` (posted by hand), ``POST payments``, ``POST payments/reverse``."""
    from .control import ControlError, _body, _ok, find_company

    def handler(fn: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request)  # type: ignore[no-any-return]
            except ControlError as e:
                return _ok({"error": e.message}, e.status)
            except LookupError as e:
                return _ok({"error": str(e).strip("'\"")}, 404)
            except BCError as e:
                return _ok({"error": e.message, "code": e.code}, e.status)
            except ValueError as e:
                return _ok({"error": str(e)}, 400)

        return wrapped

    @handler
    async def sales_invoice(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        company = find_company(emu, body)
        invoice = body.get("invoice")
        if not isinstance(invoice, dict):
            raise ControlError(400, "invoice must be a salesInvoices POST body")
        row = post_by_hand(company, invoice)
        if body.get("last_modified") is not None:  # posted a while ago, say
            stamp = parse_datetime(str(body["last_modified"]))
            if stamp is None:
                raise ControlError(400, "last_modified: not an ISO datetime with zone")
            company.sales_invoices.update(row, {"lastModifiedDateTime": stamp}, touch=False)
        return _ok(_state(company, row), 201)

    @handler
    async def pay(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        company = find_company(emu, body)
        row = find_invoice(company, str(body.get("invoice", "")))
        entry = apply(
            company,
            row,
            str(body.get("amount", "")),
            kind=str(body.get("kind", "payment")),
            reference=str(body.get("reference", "")),
        )
        return _ok({"application": entry.as_dict(), "invoice": _state(company, row)}, 201)

    @handler
    async def unpay(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        company = find_company(emu, body)
        entry, row = reverse(company, str(body.get("id", "")))
        return _ok({"application": entry.as_dict(), "invoice": _state(company, row)})

    app.router.add_post("/_emulator/sales_invoices", sales_invoice)
    app.router.add_post("/_emulator/payments", pay)
    app.router.add_post("/_emulator/payments/reverse", unpay)
