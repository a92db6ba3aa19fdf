"""Typed errors of the Business Central client.

Every error carries BC's HTTP status, BC's error ``code`` and ``message`` and the CorrelationId
that BC puts inside its messages (quote it to Microsoft support). Messages never contain
secrets or tokens.

Only BC's own facts live here (DESIGN §2: ``bc`` knows nothing of Moment): each class says
whether retrying later can help (``transient``, and :attr:`BcError.kind`: ``auth``,
``transient`` or ``permanent``); ``field`` names the integration setting a user must correct,
when there is one (``tenant_id``, ``client_id``, ``client_secret``, ``environment``,
``company_name``). Which of the worker's error codes an error becomes is decided on the sync
side (``worker.sync.errors``).

Recognising a particular BC error (:func:`facts`, :func:`is_dialog`, :func:`names_field`):
BC translates its messages into the request's language (bc-api.md Corrections 10), so the
client asks for English on every request, each ``$batch`` part included
(:data:`worker.bc.odata.ACCEPT_LANGUAGE`), and errors are recognised by BC's error code first (codes
are never translated), then by the structure of the message (the field and table a TestField
or table-relation error names, the value in parentheses). Only an AL ``Error()``
(``Application_DialogException``) carries nothing but its text; those are matched against the
English AL label (:class:`Label`), guarded by the code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

_CORRELATION = re.compile(
    r"CorrelationId:\s*([0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})"
)
_XML_CODE = re.compile(r"<code>([^<]*)</code>")
_XML_MESSAGE = re.compile(r"<message>([^<]*)</message>")


def correlation_id(message: str | None) -> str | None:
    """The CorrelationId BC appends to error messages (``… CorrelationId:  <guid>.``)."""
    if not message:
        return None
    match = _CORRELATION.search(message)
    return match.group(1).lower() if match else None


class BcError(Exception):
    """Any failure talking to Business Central or Entra ID on its behalf."""

    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Whether the client may repeat the request at once (in process); a transient error
        # that is not retryable (e.g. a timed-out POST that may have been applied) goes to the
        # caller's own retry path instead.
        self.retryable = self.transient if retryable is None else retryable
        self.status = status
        self.code = code
        self.correlation_id = correlation_id
        self.field = field

    @property
    def kind(self) -> Literal["auth", "transient", "permanent"]:
        """BC's classification: rejected credentials (``auth``, a person must act; retried later
        as well), ``transient`` (a later attempt can succeed) or ``permanent``."""
        if isinstance(self, BcAuthError):
            return "auth"
        return "transient" if self.transient else "permanent"

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, correlation_id={self.correlation_id!r}, "
            f"field={self.field!r})"
        )


class BcAuthError(BcError):
    """Entra ID or BC rejected the credentials (bad secret, unknown tenant or app, app not set up
    in BC, token still refused after one refresh). Park and tell a person at once."""

    transient = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)


class BcPermissionDenied(BcAuthError):
    """BC accepted the token but the app lacks permissions (403 ``Authorization_*``)."""


class BcNotFound(BcError):
    """The resource does not exist (404)."""


class BcEnvironmentNotFound(BcNotFound):
    """The BC environment does not exist (404 ``NoEnvironment``)."""

    def __init__(self, environment: str, **kwargs: Any) -> None:
        kwargs.setdefault("field", "environment")
        kwargs.setdefault("code", "NoEnvironment")
        super().__init__(
            kwargs.pop("message", None)
            or f"The Business Central environment '{environment}' does not exist.",
            **kwargs,
        )
        self.environment = environment


class BcCompanyNotFound(BcNotFound):
    """No company with the configured name exists in the environment."""

    def __init__(self, company_name: str, available: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("field", "company_name")
        kwargs.setdefault("code", "Internal_CompanyNotFound")
        names = ", ".join(f"'{n}'" for n in available) or "none"
        super().__init__(
            kwargs.pop("message", None)
            or f"No company named '{company_name}' in this environment (companies: {names}).",
            **kwargs,
        )
        self.company_name = company_name
        self.available = available


class BcServiceNotPublished(BcNotFound):
    """An ODataV4 page web service is not published under the configured service name."""

    def __init__(self, service: str, page: str, **kwargs: Any) -> None:
        kwargs.pop("message", None)
        super().__init__(
            f"Publish page '{page}' as a web service named '{service}' on Business Central's "
            "'Web Services' page.",
            **kwargs,
        )
        self.service = service
        self.page = page


class BcConflict(BcError):
    """The record changed since it was read (409 ``Request_EntityChanged``) or a concurrent create
    won (409 ``Internal_EntityWithSameKeyExists``). Re-read and retry."""

    transient = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)  # repeating the same write cannot succeed
        super().__init__(message, **kwargs)


class BcValidationError(BcError):
    """BC rejected the request's data (400 ``BadRequest_*`` / ``Application_*``); retrying the same
    request cannot help."""


class BcThrottled(BcError):
    """BC answered 429 (or the subject's own budget is spent) and in-process waiting is over."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BcUnavailable(BcError):
    """BC or Entra could not be reached, timed out, or answered 408/5xx."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


def _parse_body(body: bytes | str | None) -> tuple[str | None, str | None]:
    """BC's ``{"error": {"code", "message"}}`` (JSON) or the OData XML variant."""
    if body is None:
        return None, None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    if not text:
        return None, None
    try:
        data = json.loads(text)
    except ValueError:
        code = _XML_CODE.search(text)
        msg = _XML_MESSAGE.search(text)
        if code or msg:
            return (code.group(1) if code else None), (msg.group(1) if msg else None)
        return None, text[:300]
    return error_from_json(data)


def error_from_json(data: object) -> tuple[str | None, str | None]:
    """Code and message of an OData JSON error object (``{"error": {...}}``)."""
    if isinstance(data, Mapping):
        err = data.get("error", data)
        if isinstance(err, Mapping):
            code, msg = err.get("code"), err.get("message")
            return (str(code) if code else None), (str(msg) if msg else None)
    return None, None


def from_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    retry_after: float | None = None,
    what: str = "request",
) -> BcError:
    """Build the typed error of one non-2xx BC answer (also used for ``$batch`` parts)."""
    if isinstance(body, Mapping):
        code, message = error_from_json(body)
    else:
        code, message = _parse_body(body)
    message = message or f"Business Central answered HTTP {status} to the {what}."
    kw: dict[str, Any] = {
        "status": status,
        "code": code,
        "correlation_id": correlation_id(message),
    }
    if status == 401:
        return BcAuthError(
            "Business Central rejected the app's token. Add the app (client ID) on Business "
            "Central's 'Microsoft Entra Applications' page, set State to Enabled and assign "
            f"permission sets. BC said: {message}",
            field="client_id",
            **kw,
        )
    if status == 403:
        return BcPermissionDenied(
            f"The app lacks permission in Business Central: {message}", field="client_id", **kw
        )
    if code == "NoEnvironment":
        return BcEnvironmentNotFound("", message=message, **kw)
    if code == "Internal_CompanyNotFound":
        return BcCompanyNotFound("", message=message, **kw)
    if status == 404:
        return BcNotFound(message, **kw)
    # Whether BC answers a duplicate key with 409 or 400 is not confirmed (bc-api §5.1): the
    # code decides, so "someone else made it first" is never mistaken for bad data.
    if status in (409, 412) or code == "Internal_EntityWithSameKeyExists":
        return BcConflict(message, **kw)
    if status == 429:
        return BcThrottled(message, retry_after=retry_after, **kw)
    if status == 408 or status >= 500:
        return BcUnavailable(message, retry_after=retry_after, **kw)
    return BcValidationError(message, **kw)


# ---------------------------------------------------------------------------------------------
# Recognising one BC error: by code and structure first (see the module docstring)

# BC's error codes (bc-api.md §5.1). Codes are never translated; messages are.
DIALOG = "Application_DialogException"  # any AL Error(): only its text tells which
FIELD_VALIDATION = "Application_FieldValidationException"  # TestField / FieldError
TABLE_RELATION = "Internal_InvalidTableRelation"  # a code not in the related table
RECORD_NOT_FOUND = "Internal_RecordNotFound"  # a failed Record.Get inside AL code
RESOURCE_NOT_FOUND = "BadRequest_ResourceNotFound"  # unknown URL segment (unpublished service)
ENTITY_CHANGED = "Request_EntityChanged"  # stale ETag
SAME_KEY = "Internal_EntityWithSameKeyExists"  # duplicate primary key
STRING_TOO_LONG = "Application_StringExceededLength"
DATA_NOT_FOUND_FILTER = "Internal_DataNotFoundFilter"  # a FindFirst on a filter found nothing


class Label:
    """English texts of the AL labels the worker acts on (an ``Application_DialogException``
    carries nothing else). The client asks for English, so BC answers with these."""

    # APIV2SalesInvoiceLines.Page.al (and the other line pages): AccountDoesNotExistErr.
    ACCOUNT_DOES_NOT_EXIST = "Account does not exist."
    # APIV2SalesInvoices.Page.al: CouldNotFindSellToCustomerErr / CouldNotFindBillToCustomerErr.
    SELL_TO_CUSTOMER_NOT_FOUND = "The sell-to customer cannot be found."
    BILL_TO_CUSTOMER_NOT_FOUND = "The bill-to customer cannot be found."
    # APIV2DimensionSetLines.Page.al: RecordAlreadyExistErr.
    DIMENSION_SET_LINE_EXISTS = "The dimension set line already exists."
    # APIV2SalesInvoices.Page.al / APIV2PurchaseInvoices.Page.al: DraftInvoiceActionErr.
    DRAFT_INVOICE_ONLY = "The action can be applied to a draft invoice only."
    # APIV2SalesCreditMemos.Page.al: DraftCreditMemoActionErr.
    DRAFT_CREDIT_MEMO_ONLY = "The action can be applied to a draft credit memo only."
    # APIV2SalesCreditMemos.Page.al: InvoiceIdDoesNotMatchAnInvoiceErr (the invoiceId names no
    # posted invoice: GetSalesInvoiceHeaderFromId finds Sales Invoice Headers only).
    INVOICE_ID_UNKNOWN = 'The "invoiceId" does not match to an Invoice.'
    # ApprovalsMgmt.Codeunit.al SalesPrePostCheckErr: "Sales Invoice 1001 must be approved and
    # released before you can perform this action." (inside the text, after the document).
    APPROVAL_REQUIRED = "must be approved and released before you can perform this action"
    # Finance/VAT/Registration/VATRegistrationNoFormat.Table.al: VATRegistrationNumberErr
    # ("… for Customer 10000 is not in agreement with the format specified for …").
    VAT_REGISTRATION_FORMAT = "The entered VAT Registration number for"
    # No. Series (CannotAssignManuallyErr): "… If you want to enter numbers manually, please
    # activate Manual Nos. in No. Series …".
    MANUAL_NUMBERS = "You may not enter numbers manually"


# The platform's texts, in English (the structure, not the words, is what is read).
# TestField: "Customer Posting Group must have a value in Customer: No.=C1. It cannot be zero or
# empty." (also "Status must be equal to 'Open'  in Sales Header: …"); FieldError: "Phone No. must
# not contain letters in Customer No.='10000'." (no colon: the table is not told apart).
_TEST_FIELD = re.compile(
    r"^(?P<field>.+?) must \S.*?\s+in (?P<table>[^:]+): (?P<keys>.+?)(?:\.\s|\.?$)"
)
_FIELD_ERROR = re.compile(r"^(?P<field>.+?) must \S")
# "The field No. of table Sales Line contains a value (9999) that cannot be found in the related
# table (G/L Account)."
_RELATION = re.compile(
    r"(?:The field (?P<field>.+?) of table (?P<table>.+?) )?contains a value \((?P<value>[^)]*)\)"
    r".*related table \((?P<related>[^)]*)\)"
)
# "The G/L Account does not exist. Identification fields and values: No.='9999'"
_MISSING = re.compile(
    r"The (?P<table>.+?) does not exist\. Identification fields and values: (?P<keys>.*)"
)
_KEY_PAIR = re.compile(r"(?P<name>[^=,]+?)\s*=\s*(?P<value>'(?:[^']|'')*'|[^,]*)")
_CORRELATION_TAIL = re.compile(r"\s*CorrelationId:\s*\S*\s*$")


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What one BC error says, read by its code first and its message's structure second.

    ``field`` / ``table``: the field and table a TestField, FieldError or table-relation error
    names (BC's captions, English because the client asks for English); ``value``: the value BC
    could not use (the code in parentheses of a table relation, the key of a missing record);
    ``related_table``: where a table relation looked for it (or the missing record's table);
    ``keys``: the identification fields of the record concerned (``(("No.", "C1"),)``).
    """

    code: str | None
    status: int | None
    text: str
    field: str | None = None
    table: str | None = None
    value: str | None = None
    related_table: str | None = None
    keys: tuple[tuple[str, str], ...] = ()

    @property
    def missing_record(self) -> bool:
        """BC says a record the request refers to does not exist."""
        return self.related_table is not None and self.value is not None


def message_text(exc: BcError) -> str:
    """BC's message without the ``CorrelationId`` tail."""
    return _CORRELATION_TAIL.sub("", exc.message or "").strip()


def _keys(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for match in _KEY_PAIR.finditer(text.strip().rstrip(".")):
        value = match.group("value").strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("''", "'")
        pairs.append((match.group("name").strip(), value))
    return tuple(pairs)


def facts(exc: BcError) -> ErrorFacts:
    """The structure of a BC error: which field, table and value it is about, when BC says.

    The code decides which structure is read (an answer without a code, e.g. from a proxy, is
    read for every structure): ``Application_FieldValidationException`` → TestField/FieldError;
    ``Internal_InvalidTableRelation`` / ``Internal_RecordNotFound`` → the missing record.
    """
    text = message_text(exc)
    base = ErrorFacts(exc.code, exc.status, text)
    code = exc.code
    if code in (None, TABLE_RELATION, RECORD_NOT_FOUND):
        match = _RELATION.search(text)
        if match:
            return ErrorFacts(
                code,
                exc.status,
                text,
                field=_strip(match.group("field")),
                table=_strip(match.group("table")),
                value=match.group("value").strip(),
                related_table=match.group("related").strip(),
            )
        match = _MISSING.search(text)
        if match:
            keys = _keys(match.group("keys"))
            return ErrorFacts(
                code,
                exc.status,
                text,
                table=match.group("table").strip(),
                value=keys[-1][1] if keys else match.group("keys").strip(),
                related_table=match.group("table").strip(),
                keys=keys,
            )
    if code in (None, FIELD_VALIDATION):
        match = _TEST_FIELD.match(text)
        if match:
            return ErrorFacts(
                code,
                exc.status,
                text,
                field=match.group("field").strip(),
                table=match.group("table").strip(),
                keys=_keys(match.group("keys")),
            )
        match = _FIELD_ERROR.match(text)
        if match:
            return ErrorFacts(code, exc.status, text, field=match.group("field").strip())
    return base


def _strip(value: str | None) -> str | None:
    return value.strip() if value else None


def is_dialog(exc: BcError, *labels: str) -> bool:
    """BC's answer is an AL ``Error()`` with one of these labels (English, see :class:`Label`)."""
    if exc.code not in (None, DIALOG):
        return False
    text = message_text(exc).casefold()
    return any(text.startswith(label.casefold()) for label in labels)


def names_field(exc: BcError, *fields: str, table: str | None = None) -> bool:
    """BC's answer is about one of ``fields`` (captions, case-insensitive), on ``table`` when
    given: a TestField / FieldError or a table relation naming it. A FieldError puts the
    field's current value after its caption ("Phone No. 08-123 ext 1 must not contain letters
    in …"), so the caption may be followed by a space and the value."""
    found = facts(exc)
    if found.field is None:
        return False
    if table is not None and (found.table or "").casefold() != table.casefold():
        return False
    named = found.field.casefold()
    return any(named == f.casefold() or named.startswith(f.casefold() + " ") for f in fields)
