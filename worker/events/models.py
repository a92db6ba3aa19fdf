"""The event contract: CloudEvents envelope and the data of every event type (DESIGN §3, §11).

These models are the source of ``schemas/``. Unknown extra fields are accepted (forward
compatible) and dropped; missing or wrongly typed fields make the event invalid.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Text = Annotated[str, StringConstraints(strip_whitespace=True)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# Ids and numbers end up in logs, AMQP headers and BC keys: bounded far above any real value
# (BC keys are at most 35), so an absurd one is an invalid event, not a header too big to send.
KEY_MAX = 200
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=KEY_MAX)]
ORG_ID_MAX = 100  # the store's limit (worker.store.ORG_ID_MAX)
# One printable line: the organization id keys the config store and goes into every log line.
OrgId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=ORG_ID_MAX,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
    ),
]
Money = Annotated[float, Field(allow_inf_nan=False)]
CurrencyCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^([A-Za-z]{3})?$")
]
CountryCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")
]


# Business Central keeps only the first 20 characters of a line's VAT code, without an error
# (salesInvoiceLines.taxCode → "VAT Prod. Posting Group", APIV2SalesInvoiceLines.Page.al), so a
# longer one could post with another VAT group: the event is invalid instead.
VAT_CODE_MAX = 20


def _vat_code_fits(value: str) -> str:
    if len(value) > VAT_CODE_MAX:
        raise PydanticCustomError(
            "vat_code_too_long",
            "VAT code '{value}' has {length} characters; Business Central takes at most {limit}",
            {"value": value[:60], "length": len(value), "limit": VAT_CODE_MAX},
        )
    return value


VatCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_vat_code_fits),
    WithJsonSchema({"type": "string", "maxLength": VAT_CODE_MAX}),
]


class Model(BaseModel):
    """Base of every contract model: extra fields ignored, values immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Address(Model):
    line1: Text | None = None
    line2: Text | None = None
    postal_code: Text | None = None
    city: Text | None = None
    country_code: CountryCode


class Customer(Model):
    """A Moment customer snapshot; ``number`` is the key in BC."""

    id: Key
    number: Key
    name: NonEmpty
    organization_number: Text | None = None
    vat_number: Text | None = None
    email: Text | None = None
    phone: Text | None = None
    website: Text | None = None
    currency_code: CurrencyCode | None = None
    payment_terms_days: Annotated[int, Field(ge=0, le=3650)] | None = None
    invoice_address: Address


class Department(Model):
    id: Key
    name: Text
    external_number: Text | None = None


class Tag(Model):
    group: Text
    name: Text
    code: Text | None = None


class Project(Model):
    """A Moment project snapshot; ``number`` becomes the project dimension value code."""

    id: Key
    number: Key
    name: NonEmpty
    customer: Customer | None = None
    department: Department | None = None
    tags: list[Tag] = Field(default_factory=list)


class InvoiceLine(Model):
    description: Text
    quantity: Money
    unit_price: Money
    discount_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0
    account_number: Key
    vat_code: VatCode | None = None
    project: Project | None = None


class InvoiceRef(Model):
    """The Moment invoice a credit note credits."""

    id: Key
    number: Key


class Invoice(Model):
    """A Moment invoice or credit note snapshot; ``number`` becomes BC's external document
    number. A credit note (``kind`` ``credit_note``, or any document whose total is negative)
    becomes a posted sales credit memo, applied to ``credited_invoice`` when it names one."""

    id: Key
    number: Key
    kind: Literal["invoice", "credit_note"] = Field(
        "invoice",
        description="invoice (default) or credit_note. A document whose total is negative is a "
        "credit note whatever its kind. A credit note carries its amounts negative, as they "
        "reduce what the customer owes (lines may mix signs); its total must not be positive.",
    )
    credited_invoice: InvoiceRef | None = Field(
        None,
        description="For a credit note: the Moment invoice it credits. The credit memo is "
        "applied to that invoice once it is posted in Business Central; without it the credit "
        "memo is posted unapplied.",
    )
    invoice_date: date
    due_date: date
    currency_code: CurrencyCode | None = None
    your_reference: Text | None = None
    our_reference: Text | None = None
    customer: Customer
    lines: Annotated[list[InvoiceLine], Field(min_length=1)]

    @property
    def total(self) -> Decimal:
        """The total excluding VAT as Moment sends it (negative for a credit note)."""
        return sum((line_amount(line) for line in self.lines), Decimal(0))

    @property
    def is_credit_note(self) -> bool:
        """A credit note: said so, or negative in total (BC cannot post a negative invoice)."""
        return self.kind == "credit_note" or self.total < 0

    @model_validator(mode="after")
    def _kind_fits_the_amounts(self) -> Invoice:
        if self.kind == "credit_note" and self.total > 0:
            # Either sign convention is possible for a positive credit note; booking the wrong
            # one would put a debit in the books where Moment meant a credit.
            raise PydanticCustomError(
                "credit_note_positive",
                "a credit note's total must not be positive (it is {total}): Moment sends "
                "credit notes with negative amounts",
                {"total": f"{self.total:.2f}"},
            )
        if self.credited_invoice is not None and not self.is_credit_note:
            raise PydanticCustomError(
                "credited_invoice_on_invoice",
                "credited_invoice is only for credit notes (kind credit_note or a negative "
                "total), and this invoice's total is {total}",
                {"total": f"{self.total:.2f}"},
            )
        return self


def line_amount(line: InvoiceLine) -> Decimal:
    """quantity * unit price less the line discount, exactly (no float rounding noise)."""
    gross = Decimal(str(line.quantity)) * Decimal(str(line.unit_price))
    return gross * (Decimal(100) - Decimal(str(line.discount_percent))) / Decimal(100)


class Expense(Model):
    """A posted BC purchase-invoice line on a project, for Moment to import as an expense."""

    id: NonEmpty
    project_number: NonEmpty
    activity: Text
    billable: bool
    date: date
    description: Text
    quantity: float | None
    unit_cost: float | None
    amount: float | None
    currency_code: Text
    vendor_number: Text | None
    vendor_name: Text | None
    document_number: Text
    vendor_invoice_number: Text | None


class ExpenseWithdrawal(Model):
    """An expense Moment imported before (``bc.expense.imported``) that no longer exists in BC:
    its purchase invoice was cancelled (reversed by a corrective credit memo, or corrected)."""

    id: NonEmpty = Field(description="The expense's id: the same as in bc.expense.imported.")
    imported_event_id: NonEmpty = Field(
        description="The CloudEvents id of the bc.expense.imported event this withdraws."
    )
    project_number: Text | None = Field(
        description="The project the expense was imported on (null only for a line imported "
        "before bc-sync kept it)."
    )
    document_number: Text = Field(
        description="The posted purchase invoice's number (document_number of the expense)."
    )
    bc_invoice_id: NonEmpty = Field(description="BC's id of the purchase invoice.")
    reason: Literal["canceled"] = Field(
        description="Why: canceled = the invoice's status in BC is Canceled."
    )
    seen_at: datetime = Field(description="When bc-sync saw the invoice cancelled (UTC).")


# --- data of each event type -------------------------------------------------------------


class CustomerData(Model):
    customer: Customer


class ProjectData(Model):
    project: Project


class InvoiceData(Model):
    invoice: Invoice


class ExpenseImportedData(Model):
    expense: Expense


class ExpenseWithdrawnData(Model):
    expense: ExpenseWithdrawal


class ExportedData(Model):
    """Sync status for Moment: which BC record a Moment object became."""

    object_type: Literal["customer", "project", "invoice"]
    moment_id: str
    moment_number: str
    bc_id: str | None = None
    bc_number: str | None = None
    status: str | None = None
    total_excluding_tax: float | None = None
    total_including_tax: float | None = None
    currency_code: str | None = None


class _ExportedInvoice(Model):
    """Which exported invoice a payment event is about (first in each payment event's data)."""

    moment_id: str = Field(description="The Moment invoice id.")
    moment_number: str = Field(description="The Moment invoice number.")
    bc_id: str = Field(description="The BC sales invoice id.")
    bc_number: str = Field(description="The posted invoice's number in BC.")


class InvoicePaidData(_ExportedInvoice):
    """A posted BC sales invoice that bc-sync exported is paid in full (its status turned
    ``Paid``: the customer ledger entry closed, by payments or applied credit memos)."""

    amount: float = Field(description="The invoice total including tax, now paid.")
    currency_code: str
    paid_date: date = Field(
        description="See paid_date_source: the date BC reports, or the date bc-sync saw it."
    )
    paid_date_source: Literal["bc_last_modified", "seen"] = Field(
        description="bc_last_modified: the invoice's lastModifiedDateTime in BC when it was "
        "seen paid (its status change to Paid, or a later change of the invoice; BC's API does "
        "not expose the payment's own posting date); seen: BC gave no time, this is the day "
        "bc-sync first saw the invoice paid."
    )
    seen_at: datetime = Field(description="When bc-sync read the invoice as paid.")


class InvoicePaymentUpdatedData(_ExportedInvoice):
    """The open amount of a posted BC sales invoice that bc-sync exported changed without it
    being paid in full: a partial payment or credit memo, or a payment reversed (then the
    remaining amount grows, and a paid invoice becomes ``Open`` again)."""

    amount: float = Field(description="The invoice total including tax.")
    currency_code: str
    remaining_amount: float = Field(description="What remains to be paid now.")
    previous_remaining_amount: float = Field(
        description="What remained to be paid when bc-sync last reported (the total after the "
        "export)."
    )
    paid_amount: float = Field(description="Paid so far: amount - remaining_amount.")
    status: str = Field(description="The invoice's status in BC now (Open).")
    previous_status: str = Field(description="Its status when bc-sync last reported.")
    seen_at: datetime = Field(description="When bc-sync read the invoice.")


class AppliedInvoice(Model):
    """The posted BC invoice a credit note was applied to, and the Moment invoice it is."""

    bc_id: str
    bc_number: str
    moment_id: str | None = Field(
        None, description="null when someone applied it in BC to an invoice Moment did not name"
    )
    moment_number: str | None = None


class CreditNoteExportedData(Model):
    """A Moment credit note posted in BC as a sales credit memo (``bc.credit_note.exported``)."""

    object_type: Literal["credit_note"] = "credit_note"
    moment_id: str
    moment_number: str
    bc_id: str | None = None
    bc_number: str | None = None
    status: str | None = Field(
        None, description="BC's status: Paid once applied in full to the invoice, else Open."
    )
    total_excluding_tax: float | None = Field(
        None, description="As BC shows a credit memo's totals: positive for a credit."
    )
    total_including_tax: float | None = None
    currency_code: str | None = None
    applied_to: AppliedInvoice | None = Field(
        None, description="The invoice it was applied to; null when posted unapplied."
    )


class SyncStatusData(Model):
    """An object's sync state changed: failed, waiting (e.g. for approval in BC), or synced
    again after one of those. One event per change, for Moment to show a badge on the object."""

    object_type: str
    moment_id: str
    moment_number: str | None = None
    state: Literal["failed", "waiting", "synced"]
    previous_state: Literal["failed", "waiting", "synced"] | None = Field(
        None, description="The state the previous bc.sync.status of this object announced."
    )
    bc_id: str | None = None
    bc_number: str | None = None
    error_code: str | None = Field(None, description="Stable error code when state is failed.")
    error_message: str | None = None
    event_id: str = Field(description="The Moment event whose outcome changed the state.")
    changed_at: datetime


class FailureExample(Model):
    object_type: str
    moment_number: str | None
    message: str


class FailureGroup(Model):
    code: str
    count: int
    title: str
    fix: str
    examples: list[FailureExample]


class IntegrationFailedData(Model):
    """A digest of failures for a Moment user to see in-app; ``warnings`` are objects that were
    transferred with a value left out that Business Central does not accept (same grouping)."""

    recipient_user_id: str
    window_start: datetime
    window_end: datetime
    failures: list[FailureGroup]
    warnings: list[FailureGroup] = Field(default_factory=list)
    resolved: list[FailureExample] = Field(default_factory=list)
    summary: str


INCOMING: dict[str, type[Model]] = {
    "moment.customer.created": CustomerData,
    "moment.customer.updated": CustomerData,
    "moment.project.created": ProjectData,
    "moment.project.updated": ProjectData,
    "moment.invoice.created": InvoiceData,
}
OUTGOING: dict[str, type[Model]] = {
    "bc.expense.imported": ExpenseImportedData,
    "bc.expense.withdrawn": ExpenseWithdrawnData,
    "bc.customer.exported": ExportedData,
    "bc.project.exported": ExportedData,
    "bc.invoice.exported": ExportedData,
    "bc.invoice.paid": InvoicePaidData,
    "bc.invoice.payment_updated": InvoicePaymentUpdatedData,
    "bc.credit_note.exported": CreditNoteExportedData,
    "bc.sync.status": SyncStatusData,
    "bc.integration.failed": IntegrationFailedData,
}
ALL_TYPES: dict[str, type[Model]] = {**INCOMING, **OUTGOING}


def _sequence_text(value: Any) -> Any:
    # A JSON integer is a valid CloudEvents Integer attribute: take it as its digits.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


# The CloudEvents ``sequence`` extension (lower-case, as the spec names attributes): the order
# of an object's changes when ``time`` is equal; digits, compared as an integer.
Sequence = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{1,30}$"),
    BeforeValidator(_sequence_text),
]


class Envelope(BaseModel):
    """CloudEvents 1.0, structured mode, with the ``organizationid`` extension and the optional
    ``sequence`` extension."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: Key
    source: NonEmpty
    type: NonEmpty
    time: datetime | None = Field(
        None,
        description="When the change happened in Moment: the first part of the order of an "
        "object's changes (an older change than the one in BC is superseded, never applied). "
        "An event without a time sorts before every event with one.",
    )
    organizationid: OrgId
    sequence: Sequence | None = Field(
        None,
        description="Optional CloudEvents extension: order of this object's changes when "
        "their time is equal (1-30 digits, compared as an integer; a JSON integer is "
        "accepted too). Newest change wins: time, then sequence, then id (as a string).",
    )
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    # CloudEvents distributed-tracing extension: the W3C Trace Context of the work that sent
    # the event. Any string is accepted (a malformed one is ignored and a new trace started,
    # as W3C Trace Context says); null is refused like every other optional attribute.
    traceparent: str | None = None
    tracestate: str | None = None

    @field_validator("traceparent", "tracestate", mode="before")
    @classmethod
    def _trace_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (leave the attribute out instead)")
        return value


# The JSON Schema of the two tracing attributes, for every event's envelope (schemas/).
TRACE_CONTEXT_SCHEMA: dict[str, Any] = {
    "traceparent": {
        "type": "string",
        "description": "CloudEvents distributed-tracing extension: W3C traceparent, e.g. "
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01. bc-sync continues the "
        "trace in what it does and in the events it sends; a malformed value is ignored.",
    },
    "tracestate": {
        "type": "string",
        "description": "CloudEvents distributed-tracing extension: W3C tracestate, passed on.",
    },
}
