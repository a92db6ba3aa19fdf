"""The admin API's answers as pydantic models: the handlers build their JSON through these, and
``worker.api.openapi`` publishes their schemas (``schemas/openapi.json``).

Every model is strict and closed (``extra="forbid"``): an answer with a field the model does
not know, or a value of another type, fails at once (a 500 in the tests that call the route)
instead of drifting from the document. :func:`dump` writes exactly the keys that were given, so
a model never adds or reorders what a handler answered before it had one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from worker.config.model import IntegrationConfig

M = TypeVar("M", bound="ApiModel")

# Times are answered as the ISO 8601 text the store writes (``datetime.isoformat()``); kept as
# text so the answer is byte for byte what it was (pydantic would write ``Z`` for ``+00:00``).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Json = Any  # any JSON value (e.g. a readiness check's detail, a dead letter's headers)


class ApiModel(BaseModel):
    """Base of every answer: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @classmethod
    def of(cls: type[M], data: Any) -> M:
        """Validate what a lower layer built (a dict) as this answer."""
        return cls.model_validate(data)


def dump(model: BaseModel) -> Any:
    """The JSON of an answer: the fields that were set, nothing added."""
    return model.model_dump(mode="json", exclude_unset=True)


# --- errors -------------------------------------------------------------------------------


class FieldProblem(ApiModel):
    """One problem with one field, in words a Moment admin can act on."""

    field: str = Field(description="The field's path in the request, e.g. `tenant_id`.")
    code: str = Field(description="What is wrong: required, invalid, too_long, not_found, ...")
    message: str = Field(description="A sentence for the admin, starting with the field's label.")


class FieldErrors(ApiModel):
    """The request was refused: nothing was saved or done. Every problem found is listed."""

    errors: list[FieldProblem]


ErrorCode = Literal[
    "unauthorized",
    "forbidden",  # a read-only token (name=token:read) on a route that changes something
    "not_found",
    "busy",
    "unavailable",
    "unreadable",
    "bc_unreachable",
    "bc_error",
    "not_configured",
    "internal error",
]


class ErrorAnswer(ApiModel):
    """An error other than field errors. ``error`` is the machine-readable kind."""

    error: ErrorCode
    message: str | None = Field(None, description="What happened, in plain words.")
    id: str | None = Field(None, description="not_found of a dead letter: the id asked for.")
    retry_after: int | None = Field(
        None, description="bc_unreachable: seconds to wait before trying again (also Retry-After)."
    )


# --- configuration ------------------------------------------------------------------------


class Saved(ApiModel):
    status: Literal["Created", "Updated"] = Field(
        description="Created: the organization had no integration; Updated: it had one."
    )


class Deleted(ApiModel):
    status: Literal["Deleted"]


def _public_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in IntegrationConfig.model_fields.items():
        if name == "client_secret":
            fields["client_secret_set"] = (
                bool,
                Field(description="Whether a Client Secret is stored (it is never returned)."),
            )
            continue
        fields[name] = (info.annotation, info)
    return fields


class _PublicConfigBase(BaseModel):
    # Every field is always in the answer (defaults included): the schema says so.
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


def _public_config() -> type[BaseModel]:
    from pydantic import create_model

    model: type[BaseModel] = create_model(
        "PublicConfig",
        __base__=_PublicConfigBase,
        __doc__="The saved integration as users may see it: every field of the dialog, the "
        "secret replaced by `client_secret_set`, with the version and timestamps.",
        **_public_fields(),
        version=(int, Field(description="Increases by one on every save.")),
        created_at=(Timestamp, ...),
        updated_at=(Timestamp, ...),
    )
    return model


# Documented, not used to build the answer: it is the config model's own JSON
# (``StoredConfig.to_public_dict``), so its schema is that model's, without the secret.
PublicConfig = _public_config()


class Company(ApiModel):
    id: str
    name: str
    display_name: str


class CompanyFacts(ApiModel):
    id: str
    name: str
    display_name: str
    country: str = Field(description="The company's country (domestic invoice addresses).")
    local_currency: str = Field(description="Sent to BC as blank when an invoice uses it.")


class DimensionOption(ApiModel):
    code: str
    name: str
    in_general_ledger_setup: bool = Field(
        description="A shortcut dimension of the General Ledger Setup (line dimensions need it)."
    )
    shortcut_dimension: int | None = Field(description="Its shortcut number (1-8), if any.")


class PostingGroupOption(ApiModel):
    code: str
    description: str


class OptionsAnswer(ApiModel):
    """The dialog's drop-downs. Without a company name (or when it was not found) only the
    companies are listed; ``issues`` says what kept a part from being read."""

    companies: list[Company]
    company: CompanyFacts | None
    dimensions: list[DimensionOption] | None
    gen_bus_posting_groups: list[PostingGroupOption] | None = Field(
        description="null when they could not be read (their service is not published)."
    )
    customer_posting_groups: list[PostingGroupOption] | None
    issues: list[FieldProblem]


# --- status -------------------------------------------------------------------------------


class SectionError(ApiModel):
    """A section that could not be read this time; the other sections still answer."""

    error: str


class ConfigurationSection(ApiModel):
    configured: bool
    version: int | None = Field(None, description="Only when configured.")
    updated_at: Timestamp | None = Field(None, description="Only when configured.")


class ObjectOutcome(ApiModel):
    """The last success, failure and waiting object of one object type."""

    object_type: str
    last_success_at: Timestamp | None
    last_success_ref: str | None = Field(description="e.g. the BC number of what was written.")
    last_failure_at: Timestamp | None
    last_failure_code: str | None
    last_failure_message: str | None
    last_waiting_at: Timestamp | None
    last_waiting_ref: str | None
    last_waiting_code: str | None
    last_waiting_message: str | None


class DeadLetterCount(ApiModel):
    count: int | None = Field(description="null when the dead-letter queue could not be read.")
    by_code: dict[str, int] | None = None
    error: str | None = None


class ExpensesSection(ApiModel):
    polled: bool
    watermark: Timestamp | None = None
    last_poll_at: Timestamp | None = None
    last_success_at: Timestamp | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    paused: bool | None = None


class PaymentInvoices(ApiModel):
    open: int = Field(description="Exported invoices followed while open.")
    paid: int = Field(description="Exported invoices seen paid.")


class PaymentsSection(ExpensesSection):
    """The payment import's poll state, and how many exported invoices it follows."""

    invoices: PaymentInvoices | None = None


class PendingNotifications(ApiModel):
    failures: int
    resolved: int
    oldest_at: Timestamp | None
    due_at: Timestamp | None = Field(description="When the next digest goes out.")


class LastDigest(ApiModel):
    id: int
    created_at: Timestamp | None
    window_start: Timestamp | None
    window_end: Timestamp | None
    failures: int
    resolved: int
    recipients: int
    delivered: int
    refused: int
    sent_at: Timestamp | None
    attempts: int
    next_attempt_at: Timestamp | None
    last_error: str | None


class NotificationsSection(ApiModel):
    pending: PendingNotifications
    last_digest: LastDigest | None


class StatusAnswer(ApiModel):
    """Sync status of one organization, one section per concern."""

    organization: str
    configuration: ConfigurationSection | SectionError
    objects: list[ObjectOutcome] | SectionError
    dead_letters: DeadLetterCount | SectionError
    expenses: ExpensesSection | SectionError | None = Field(
        None, description="When the process runs the expense import."
    )
    payments: PaymentsSection | SectionError | None = Field(
        None, description="When the process runs the payment import."
    )
    notifications: NotificationsSection | SectionError | None = Field(
        None, description="When the process records notifications."
    )


# --- dead letters -------------------------------------------------------------------------


class Filters(ApiModel):
    """The filters that were applied (only those set)."""

    org: str | None = None
    type: str | None = None
    code: str | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    ids: list[str] | None = None
    limit: int | None = None


class DeadLetterRow(ApiModel):
    id: str = Field(description="The event id (or a hash of the body when it has none).")
    event_id: str | None
    org: str | None
    type: str | None
    subject: str | None = Field(description="The Moment object, e.g. `invoice 1864`.")
    code: str = Field(description="The catalogue code of the failure.")
    error_class: str = Field(
        description="invalid | permanent | attempts_exhausted | delivery_limit | unknown"
    )
    message: str
    attempts: int | None
    first_failure: Timestamp | None
    last_failure: Timestamp | None
    replay_id: str | None = Field(description="Set when a replayed event failed again.")


class DeadLetterList(ApiModel):
    count: int
    limit: int | None
    items: list[DeadLetterRow]
    filters: Filters


class GroupCount(ApiModel):
    key: str
    count: int


class DeadLetterGroups(ApiModel):
    group_by: Literal["code", "org", "type"]
    total: int
    groups: list[GroupCount]
    filters: Filters


class ErrorInfo(ApiModel):
    code: str
    title: str
    fix: str


class MessageProperties(ApiModel):
    content_type: str | None
    message_id: str | None


class DeadLetterDetail(ApiModel):
    """One dead letter in full, redacted: what failed, why, what to do, the event itself."""

    id: str
    summary: DeadLetterRow
    error: ErrorInfo
    history: list[dict[str, Json]] = Field(description="Every failure so far (at most 20).")
    properties: MessageProperties
    headers: dict[str, Json]
    envelope: dict[str, Json] | None = Field(description="The CloudEvent, when it is JSON.")
    body: str | None = Field(description="The body as text when it is not a JSON object.")
    copies: int = Field(description="How many messages in the queue carry this id.")


class ReplayRequest(ApiModel):
    """Which dead letters to replay: every filter given must match; none given = all."""

    org: str | None = Field(None, description="Organization id (glob `*` allowed).")
    type: str | None = Field(None, description="Event type (glob).")
    code: str | None = Field(None, description="Failure code (glob).")
    since: str | None = Field(None, description="Last failure at or after: ISO time or `2h`.")
    until: str | None = Field(None, description="Last failure before: ISO time or `2h`.")
    limit: int | None = Field(None, ge=1, le=10_000)
    ids: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1)
    dry_run: bool = Field(False, description="Only say which would be replayed.")


class ReplayAnswer(ApiModel):
    replay_id: str
    dry_run: bool
    matched: int
    replayed: int
    failed: int
    error: str | None = Field(description="Why the run stopped (answered with 502).")
    filters: Filters
    items: list[DeadLetterRow] | None = Field(None, description="Dry run: what would go.")
    ids: list[str] | None = Field(None, description="The ids replayed.")


# --- health -------------------------------------------------------------------------------


class Health(ApiModel):
    status: Literal["ok"]


class CheckResult(ApiModel):
    ok: bool
    detail: Json


class Readiness(ApiModel):
    status: Literal["ready", "unready"]
    checks: dict[str, CheckResult]
    time: float = Field(description="Unix time of the answer.")
