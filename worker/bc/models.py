"""Small typed views of the BC records the client returns (enums decoded, etags kept).

Each model is built from a BC JSON row by ``from_row``; fields BC did not send get empty
defaults, so a BC version that drops a field degrades instead of crashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from worker.bc.odata import decode_enum

Row = Mapping[str, Any]


def _s(row: Row, key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def _enum(row: Row, key: str) -> str:
    return decode_enum(_s(row, key))


def _date(row: Row, key: str) -> date | None:
    value = row.get(key)
    if not value or value == "0001-01-01":
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _datetime(row: Row, key: str) -> datetime | None:
    value = row.get(key)
    if not value:
        return None
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if parsed.year <= 1 else parsed


def _dec(row: Row, key: str) -> Decimal:
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return Decimal(0)
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return Decimal(0)


def _etag(row: Row) -> str:
    return _s(row, "@odata.etag")


# The head of every sales document row (invoices, credit memos, their ``$select`` views).
_HEAD_FIELDS = ("id", "number", "externalDocumentNumber", "customerNumber", "status")


def _head(row: Row, *, lower_id: bool = False) -> tuple[str, str, str, str, str]:
    """(id, number, external document number, customer number, decoded status)."""
    doc_id = _s(row, "id")
    return (
        doc_id.lower() if lower_id else doc_id,
        _s(row, "number"),
        _s(row, "externalDocumentNumber"),
        _s(row, "customerNumber"),
        _enum(row, "status"),
    )


def _rows(row: Row, key: str) -> tuple[Row, ...]:
    """The rows of an expanded collection (none when BC did not expand it)."""
    rows = row.get(key)
    if not isinstance(rows, list):
        return ()
    return tuple(r for r in rows if isinstance(r, Mapping))


def _sales_lines(row: Row, key: str) -> tuple[SalesInvoiceLine, ...]:
    """The expanded lines of a sales document (none when BC did not expand them)."""
    return tuple(SalesInvoiceLine.from_row(r) for r in _rows(row, key))


def _line_head(row: Row) -> tuple[str, str, int, str, str, str, Decimal]:
    """(id, document id, sequence, decoded line type, line object number, description,
    quantity): the head of every document line row."""
    return (
        _s(row, "id"),
        _s(row, "documentId"),
        int(row.get("sequence") or 0),
        _enum(row, "lineType"),
        _s(row, "lineObjectNumber"),
        _s(row, "description"),
        _dec(row, "quantity"),
    )


@dataclass(frozen=True, slots=True)
class _SalesHead:
    """The fields :func:`_head` reads, first in every sales document model."""

    id: str
    number: str  # a draft's number is renamed to the posted number after posting
    external_document_number: str
    customer_number: str
    status: str  # decoded: "Draft", "In Review", "Open", "Paid", "Canceled", "Corrective", " "


@dataclass(frozen=True, slots=True)
class _LineHead:
    """The fields :func:`_line_head` reads, first in every document line model."""

    id: str
    document_id: str
    sequence: int
    line_type: str  # decoded, e.g. "Account"
    line_object_number: str
    description: str
    quantity: Decimal


class _DraftOrPosted:
    """What the status of a sales invoice or credit memo tells about posting.

    The API status ([BCApps] SalesInvoiceAggregator.Codeunit.al, bc-api Corrections 4; the
    credit memos' GraphMgtSalCrMemoBuf.Codeunit.al maps the Sales Header status the same way):
    - ``Draft``: unposted, Sales Header status Open (editable);
    - ``In Review``: unposted, Pending Approval (someone must approve it in BC);
    - ``Paid``, ``Canceled``, ``Corrective``: posted (a credit memo applied in full is Paid);
    - ``Open``: EITHER posted OR an unposted draft that is Released / Pending Prepayment.
    The aggregate's own ``Posted`` flag is not on the API pages, and the ``Open`` case cannot
    be told apart by any field they show (the number series is not readable through API v2.0
    either); ``Microsoft.NAV.post`` decides it: BC posts a released draft and refuses a posted
    document (GetDraftInvoice tests ``Rec.Posted``: "The action can be applied to a draft
    invoice only."). See worker/sync/documents.py.
    """

    __slots__ = ()
    status: str

    @property
    def is_draft(self) -> bool:
        """Unposted and editable (status ``Draft``)."""
        return self.status == "Draft"

    @property
    def in_review(self) -> bool:
        """Unposted and pending approval in BC (status ``In Review``)."""
        return self.status == "In Review"

    @property
    def surely_posted(self) -> bool:
        """A status only posted documents have (``Open`` is not one of them)."""
        return self.status in ("Paid", "Canceled", "Corrective")


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    name: str
    display_name: str

    @classmethod
    def from_row(cls, row: Row) -> Company:
        return cls(_s(row, "id"), _s(row, "name"), _s(row, "displayName"))


@dataclass(frozen=True, slots=True)
class CompanyInformation:
    id: str
    display_name: str
    country: str  # the domestic country for posting groups
    currency_code: str

    @classmethod
    def from_row(cls, row: Row) -> CompanyInformation:
        return cls(
            _s(row, "id"), _s(row, "displayName"), _s(row, "country"), _s(row, "currencyCode")
        )


@dataclass(frozen=True, slots=True)
class GeneralLedgerSetup:
    local_currency_code: str
    shortcut_dimension_codes: tuple[str, ...]  # shortcut 1..8 (1 and 2 are the global ones)

    @classmethod
    def from_row(cls, row: Row) -> GeneralLedgerSetup:
        codes = tuple(_s(row, f"shortcutDimension{i}Code") for i in range(1, 9))
        return cls(_s(row, "localCurrencyCode"), codes)

    @property
    def dimension_codes(self) -> tuple[str, ...]:
        """The configured shortcut dimension codes, blanks left out."""
        return tuple(c for c in self.shortcut_dimension_codes if c)


@dataclass(frozen=True, slots=True)
class Dimension:
    id: str
    code: str
    display_name: str

    @classmethod
    def from_row(cls, row: Row) -> Dimension:
        return cls(_s(row, "id"), _s(row, "code"), _s(row, "displayName"))


@dataclass(frozen=True, slots=True)
class DimensionValue:
    """A dimension value as the standard API shows it (read-only there)."""

    id: str
    code: str
    dimension_id: str
    display_name: str

    @classmethod
    def from_row(cls, row: Row) -> DimensionValue:
        return cls(_s(row, "id"), _s(row, "code"), _s(row, "dimensionId"), _s(row, "displayName"))


@dataclass(frozen=True, slots=True)
class PageDimensionValue:
    """A row of the ODataV4 'Dimension Values' page (where values are written)."""

    dimension_code: str
    code: str
    name: str
    blocked: bool
    etag: str

    @classmethod
    def from_row(cls, row: Row) -> PageDimensionValue:
        return cls(
            _s(row, "Dimension_Code"),
            _s(row, "Code"),
            _s(row, "Name"),
            bool(row.get("Blocked")),
            _etag(row),
        )


@dataclass(frozen=True, slots=True)
class PostingGroup:
    code: str
    description: str

    @classmethod
    def from_row(cls, row: Row) -> PostingGroup:
        return cls(_s(row, "Code"), _s(row, "Description"))


@dataclass(frozen=True, slots=True)
class CustomerCard:
    """The posting groups of a customer, from the ODataV4 'Customer Card' page."""

    number: str
    gen_bus_posting_group: str
    customer_posting_group: str
    etag: str

    @classmethod
    def from_row(cls, row: Row) -> CustomerCard:
        return cls(
            _s(row, "No"),
            _s(row, "Gen_Bus_Posting_Group"),
            _s(row, "Customer_Posting_Group"),
            _etag(row),
        )


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    number: str
    display_name: str
    country: str
    currency_code: str  # the LCY code for the local currency (blank if G/L setup has none)
    email: str
    blocked: str  # decoded: " " (not blocked), "Ship", "Invoice", "All"
    etag: str
    last_modified: datetime | None
    city: str = ""
    postal_code: str = ""
    tax_registration_number: str = ""

    @classmethod
    def from_row(cls, row: Row) -> Customer:
        return cls(
            _s(row, "id"),
            _s(row, "number"),
            _s(row, "displayName"),
            _s(row, "country"),
            _s(row, "currencyCode"),
            _s(row, "email"),
            _enum(row, "blocked"),
            _etag(row),
            _datetime(row, "lastModifiedDateTime"),
            _s(row, "city"),
            _s(row, "postalCode"),
            _s(row, "taxRegistrationNumber"),
        )


@dataclass(frozen=True, slots=True)
class PaymentTerms:
    id: str
    code: str
    display_name: str
    due_date_calculation: str

    @classmethod
    def from_row(cls, row: Row) -> PaymentTerms:
        return cls(
            _s(row, "id"), _s(row, "code"), _s(row, "displayName"), _s(row, "dueDateCalculation")
        )


@dataclass(frozen=True, slots=True)
class SalesInvoiceLine(_LineHead):
    unit_price: Decimal
    # (dimension code, value code) when read with ``$expand=dimensionSetLines``
    dimensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_row(cls, row: Row) -> SalesInvoiceLine:
        return cls(
            *_line_head(row),
            _dec(row, "unitPrice"),
            tuple((_s(d, "code"), _s(d, "valueCode")) for d in _rows(row, "dimensionSetLines")),
        )


@dataclass(frozen=True, slots=True)
class SalesInvoice(_SalesHead, _DraftOrPosted):
    invoice_date: date | None
    posting_date: date | None
    due_date: date | None
    currency_code: str  # the LCY code for the local currency (blank if G/L setup has none)
    total_amount_including_tax: Decimal
    etag: str
    lines: tuple[SalesInvoiceLine, ...] = ()
    total_amount_excluding_tax: Decimal = Decimal(0)

    @classmethod
    def from_row(cls, row: Row) -> SalesInvoice:
        return cls(
            *_head(row),
            _date(row, "invoiceDate"),
            _date(row, "postingDate"),
            _date(row, "dueDate"),
            _s(row, "currencyCode"),
            _dec(row, "totalAmountIncludingTax"),
            _etag(row),
            _sales_lines(row, "salesInvoiceLines"),
            _dec(row, "totalAmountExcludingTax"),
        )


class SalesDocument(Protocol):
    """What a sales invoice and a sales credit memo have in common for their export."""

    @property
    def id(self) -> str: ...
    @property
    def number(self) -> str: ...
    @property
    def customer_number(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def currency_code(self) -> str: ...
    @property
    def total_amount_excluding_tax(self) -> Decimal: ...
    @property
    def total_amount_including_tax(self) -> Decimal: ...
    @property
    def lines(self) -> tuple[SalesInvoiceLine, ...]: ...
    @property
    def is_draft(self) -> bool: ...
    @property
    def in_review(self) -> bool: ...
    @property
    def surely_posted(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SalesCreditMemo(_SalesHead, _DraftOrPosted):
    """A sales credit memo ([BCApps] APIV2SalesCreditMemos.Page.al): drafts and posted ones in
    one set, like sales invoices. ``invoice_id``/``invoice_number``: the posted invoice it is
    applied to (empty GUID / blank when none)."""

    credit_memo_date: date | None
    currency_code: str  # the LCY code for the local currency (blank if G/L setup has none)
    total_amount_excluding_tax: Decimal
    total_amount_including_tax: Decimal
    invoice_id: str
    invoice_number: str
    etag: str
    lines: tuple[SalesInvoiceLine, ...] = ()  # the lines page has the invoice lines' fields

    @classmethod
    def from_row(cls, row: Row) -> SalesCreditMemo:
        return cls(
            *_head(row),
            _date(row, "creditMemoDate"),
            _s(row, "currencyCode"),
            _dec(row, "totalAmountExcludingTax"),
            _dec(row, "totalAmountIncludingTax"),
            _s(row, "invoiceId"),
            _s(row, "invoiceNumber"),
            _etag(row),
            _sales_lines(row, "salesCreditMemoLines"),
        )

    @property
    def applied(self) -> bool:
        """Applied to a posted invoice (``invoiceId`` names one)."""
        return bool(self.invoice_id) and self.invoice_id != "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class DimensionSetLine:
    dimension_id: str  # the line's key: the dimension's id
    code: str
    value_id: str
    value_code: str
    value_display_name: str

    @classmethod
    def from_row(cls, row: Row) -> DimensionSetLine:
        return cls(
            _s(row, "id"),
            _s(row, "code"),
            _s(row, "valueId"),
            _s(row, "valueCode"),
            _s(row, "valueDisplayName"),
        )


@dataclass(frozen=True, slots=True)
class PurchaseInvoiceLine(_LineHead):
    """A purchase invoice line; its ``id`` is stable: the expense id in Moment."""

    unit_cost: Decimal
    net_amount: Decimal
    amount_including_tax: Decimal
    dimensions: tuple[DimensionSetLine, ...]

    @classmethod
    def from_row(cls, row: Row) -> PurchaseInvoiceLine:
        return cls(
            *_line_head(row),
            _dec(row, "unitCost"),
            _dec(row, "netAmount"),
            _dec(row, "amountIncludingTax"),
            tuple(DimensionSetLine.from_row(d) for d in _rows(row, "dimensionSetLines")),
        )

    def dimension(self, code: str) -> DimensionSetLine | None:
        """The line's value for a dimension code, if it has one."""
        for dim in self.dimensions:
            if dim.code == code:
                return dim
        return None


@dataclass(frozen=True, slots=True)
class PurchaseInvoice:
    id: str
    number: str
    status: str
    vendor_number: str
    vendor_name: str
    vendor_invoice_number: str
    invoice_date: date | None
    posting_date: date | None
    currency_code: str  # the LCY code for the local currency (blank if G/L setup has none)
    last_modified: datetime | None
    lines: tuple[PurchaseInvoiceLine, ...]

    @classmethod
    def from_row(cls, row: Row) -> PurchaseInvoice:
        return cls(
            _s(row, "id"),
            _s(row, "number"),
            _enum(row, "status"),
            _s(row, "vendorNumber"),
            _s(row, "vendorName"),
            _s(row, "vendorInvoiceNumber"),
            _date(row, "invoiceDate"),
            _date(row, "postingDate"),
            _s(row, "currencyCode"),
            _datetime(row, "lastModifiedDateTime"),
            tuple(PurchaseInvoiceLine.from_row(r) for r in _rows(row, "purchaseInvoiceLines")),
        )

    @property
    def is_draft(self) -> bool:
        """Unposted. Unlike sales invoices, every unposted purchase invoice shows ``Draft``,
        whatever its Purchase Header status ([BCApps] PurchInvAggregator.Codeunit.al,
        InsertOrModifyFromPurchaseHeader), so the status is enough here."""
        return self.status == "Draft"

    @property
    def is_posted(self) -> bool:
        """Posted, cancelled ones included. PurchInvAggregator.Codeunit.al gives an unposted
        invoice ``Draft`` always (no ``In Review`` / ``Open`` for purchase drafts, unlike sales)
        and a posted one ``Open``, ``Paid``, ``Canceled`` or ``Corrective``; any other status
        is not taken for posted."""
        return self.status in PURCHASE_POSTED

    @property
    def is_canceled(self) -> bool:
        """Reversed by a corrective credit memo (or corrected): its lines are no expense."""
        return self.status == "Canceled"


# Statuses of a posted purchase invoice (PurchInvAggregator.Codeunit.al,
# SetStatusOptionFromPurchaseInvoiceHeader).
PURCHASE_POSTED = frozenset({"Open", "Paid", "Canceled", "Corrective"})


@dataclass(frozen=True, slots=True)
class PurchaseInvoicePage:
    """One page of the expense import: posted invoices only (cancelled ones included), and the
    newest ``lastModifiedDateTime`` seen on the page (drafts included) for the watermark."""

    invoices: tuple[PurchaseInvoice, ...]
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class SalesInvoiceBalance(_SalesHead):
    """What the payment import reads of a sales invoice (a ``$select``): its status and the
    amount still open. ``remaining_amount`` is computed by BC when read (the customer ledger
    entry's remaining amount; 0 when canceled); ``None`` when BC did not send it."""

    posting_date: date | None
    currency_code: str
    total_amount_including_tax: Decimal
    remaining_amount: Decimal | None
    last_modified: datetime | None

    FIELDS = (
        *_HEAD_FIELDS,
        "postingDate",
        "currencyCode",
        "totalAmountIncludingTax",
        "remainingAmount",
        "lastModifiedDateTime",
    )

    @classmethod
    def from_row(cls, row: Row) -> SalesInvoiceBalance:
        return cls(
            *_head(row, lower_id=True),
            _date(row, "postingDate"),
            _s(row, "currencyCode"),
            _dec(row, "totalAmountIncludingTax"),
            _dec(row, "remainingAmount") if row.get("remainingAmount") is not None else None,
            _datetime(row, "lastModifiedDateTime"),
        )


# The statuses of posted sales documents (APIV2SalesInvoices / APIV2SalesCreditMemos: Draft
# and In Review are unposted; a Canceled invoice or credit memo was posted, then canceled).
POSTED_INVOICE_STATUSES = ("Open", "Paid", "Canceled", "Corrective")
POSTED_CREDIT_MEMO_STATUSES = ("Open", "Paid", "Canceled")


@dataclass(frozen=True, slots=True)
class PostedDocument(_SalesHead):
    """What the reconciliation reads of a posted sales invoice or credit memo (a ``$select``):
    both pages have these fields under the same names (APIV2SalesInvoices.Page.al,
    APIV2SalesCreditMemos.Page.al). A credit memo's totals are positive."""

    posting_date: date | None
    currency_code: str
    total_amount_excluding_tax: Decimal
    total_amount_including_tax: Decimal

    FIELDS = (
        *_HEAD_FIELDS,
        "postingDate",
        "currencyCode",
        "totalAmountExcludingTax",
        "totalAmountIncludingTax",
    )

    @classmethod
    def from_row(cls, row: Row) -> PostedDocument:
        return cls(
            *_head(row, lower_id=True),
            _date(row, "postingDate"),
            _s(row, "currencyCode"),
            _dec(row, "totalAmountExcludingTax"),
            _dec(row, "totalAmountIncludingTax"),
        )


@dataclass(frozen=True, slots=True)
class LineDimension:
    """One dimension value to set on a sales invoice line."""

    line_id: str
    dimension_code: str
    value_code: str


@dataclass(frozen=True, slots=True)
class LineDimensionResult:
    """What :meth:`BcConnection.set_line_dimensions` did: created and updated counts."""

    created: int
    updated: int
