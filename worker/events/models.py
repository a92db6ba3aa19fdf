"""The event contract: CloudEvents envelope and the data of every event type (DESIGN §3, §11).

These models are the source of ``schemas/``. Unknown extra fields are accepted (forward
compatible) and dropped; missing or wrongly typed fields make the event invalid.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# Ids and numbers end up in logs, AMQP headers and BC keys: bounded far above any real value
# (BC keys are at most 35), so an absurd one is an invalid event, not a header too big to send.
KEY_MAX = 200
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=KEY_MAX)]
ORG_ID_MAX = 100  # the store's limit (worker.config.store.ORG_ID_MAX)
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
    vat_code: Text | None = None
    project: Project | None = None


class Invoice(Model):
    """A Moment invoice snapshot; ``number`` becomes BC's external document number."""

    id: Key
    number: Key
    invoice_date: date
    due_date: date
    currency_code: CurrencyCode | None = None
    your_reference: Text | None = None
    our_reference: Text | None = None
    customer: Customer
    lines: Annotated[list[InvoiceLine], Field(min_length=1)]


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


# --- data of each event type -------------------------------------------------------------


class CustomerData(Model):
    customer: Customer


class ProjectData(Model):
    project: Project


class InvoiceData(Model):
    invoice: Invoice


class ExpenseImportedData(Model):
    expense: Expense


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
    """A digest of failures for a Moment user to see in-app."""

    recipient_user_id: str
    window_start: datetime
    window_end: datetime
    failures: list[FailureGroup]
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
    "bc.customer.exported": ExportedData,
    "bc.project.exported": ExportedData,
    "bc.invoice.exported": ExportedData,
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
