"""The integration configuration of one Moment organization (DESIGN §6, §11 "Configuration body").

One model, :class:`IntegrationConfig`, holds exactly the fields of the help page's dialog.
Validation normalises what users type (percent-encoded company names, lowercase tenant ids,
uppercase BC codes, de-duplicated recipients) and turns every problem into a field-level error
a Moment admin can act on (:func:`parse_config`, :func:`field_errors`).

Values that end up inside BC or Entra URLs (tenant ID, client ID, environment) are restricted
so that nothing a user types can change a URL's host or path; the company name may contain
anything BC allows and is percent-encoded by the BC client where it goes into a URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal, Protocol, TypedDict
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Business Central's own limits: Company.Name is Text[30], codes are Code[20].
COMPANY_NAME_MAX = 30
CODE_MAX = 20
ENVIRONMENT_MAX = 30
EXPENSE_ACTIVITY_MAX = 50
TAG_GROUP_MAX = 100
NOTES_MAX = 2000
USER_ID_MAX = 100
EMAIL_MAX = 254
RECIPIENTS_MAX = 100
SECRET_MAX = 512

# Control characters (line breaks, NUL, ...) and lone surrogates: never valid in a one-line field,
# and PostgreSQL JSONB cannot store NUL or surrogates at all.
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Free text (notes) may contain line breaks and tabs, nothing else of the above.
_BAD_TEXT_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NIL_GUID = "00000000-0000-0000-0000-000000000000"
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# At least two labels; the top-level domain is letters (or IDNA "xn--…"), so no IP addresses.
_DOMAIN = re.compile(rf"(?:{_DNS_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_-]+")
_USER_ID = re.compile(r"[^\s@/\\?#%]+")
# RFC 5322 dot-atom local part (ASCII), as accepted by ordinary mail servers.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_BOOL = TypeAdapter(bool)


class FieldError(TypedDict):
    """One problem with one field, as the admin API answers it (422 ``errors``)."""

    field: str
    code: str
    message: str


class ConfigValidationError(ValueError):
    """A configuration was rejected; ``errors`` says which fields and why, in plain words."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(e["message"] for e in self.errors) or "invalid configuration")


def _fail(code: str, fragment: str, **ctx: Any) -> PydanticCustomError:
    """An error for one field: ``fragment`` continues a sentence that starts with its label."""
    return PydanticCustomError(f"config_{code}", fragment, ctx or None)


def _is_stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, Mapping) and bool(info.context.get("stored"))


# ---------------------------------------------------------------------------------------------
# Field normalisers. Each returns the normalised value or raises a ``_fail`` error.


def _trimmed(value: object, bad: re.Pattern[str], bad_says: str) -> str | None:
    """Trimmed text; blank means "not set"; text with ``bad`` characters is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("invalid", "must be text.")
    text = value.strip()
    if not text:
        return None
    if bad.search(text):
        raise _fail("invalid", bad_says)
    return text


def _at_most(text: str | None, limit: int, why: str = "") -> str | None:
    if text is not None:
        _length_within(text, limit, why)
    return text


def _length_within(text: str, limit: int, why: str = "") -> str:
    if len(text) > limit:
        raise _fail(
            "too_long", "can be at most {max_length} characters" + why + ".", max_length=limit
        )
    return text


def _text(value: object) -> str | None:
    """Trimmed one-line text; blank means "not set"."""
    return _trimmed(value, _BAD_CHARS, "must be one line without control characters.")


def _limited(limit: int, why: str = "") -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return _at_most(_text(value), limit, why)

    return check


def _bc_upper(text: str) -> str:
    # BC (.NET) uppercases character by character; Python would turn "ß" into "SS".
    return "".join(up if len(up := ch.upper()) == 1 else ch for ch in text)


def _code(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return _length_within(_bc_upper(text), CODE_MAX, " (a Business Central code)")


def _guid(value: str) -> str | None:
    text = value.lower()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text if _GUID.fullmatch(text) and text != _NIL_GUID else None


def _tenant_id(value: object) -> str:
    text = _text(value)
    if text is None:
        raise _fail("required", "is required.")
    guid = _guid(text)
    if guid is not None:
        return guid
    domain = text.lower()
    if len(domain) <= 253 and _DOMAIN.fullmatch(domain):
        return domain
    raise _fail(
        "invalid",
        "must be the directory (tenant) ID, a GUID such as 7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f, "
        "or the tenant's domain name such as contoso.onmicrosoft.com.",
    )


def _client_id(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    guid = _guid(text)
    if guid is None:
        raise _fail(
            "invalid",
            "must be the application (client) ID of the Entra app, a GUID such as "
            "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f; leave it empty to use the default.",
        )
    return guid


def _client_secret(value: object) -> SecretStr | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("invalid", "must be text.")
    # Blank means "unchanged": the dialog never gets the stored secret back to resend it.
    value = value.strip()
    if not value:
        return None
    _length_within(value, SECRET_MAX)
    if _BAD_CHARS.search(value):
        raise _fail("invalid", "must not contain spaces, line breaks or other control characters.")
    return SecretStr(value)


def _environment(value: object) -> str:
    text = _text(value)
    if text is None:
        raise _fail("required", "is required.")
    if not _ENVIRONMENT.fullmatch(text) or not text.isascii():
        raise _fail(
            "invalid",
            "can only contain letters a-z, digits, '-' and '_', for example Production or Sandbox.",
        )
    return _length_within(text, ENVIRONMENT_MAX)


def decode_company_name(raw: str) -> str:
    """Percent-decode a company name once, as users paste it from BC URLs.

    ``CRONUS%20Sverige%20AB`` → ``CRONUS Sverige AB``; a ``%`` that starts no escape stays
    (``100% Consulting``); escapes that do not decode to UTF-8 leave the whole name as typed.
    """
    if "%" not in raw:
        return raw
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return raw


def _company_name(value: object, info: ValidationInfo) -> str:
    if value is None:
        raise _fail("required", "is required.")
    if not isinstance(value, str):
        raise _fail("invalid", "must be text.")
    # Stored names were decoded when saved; decoding again would turn "100%25" into "100%".
    name = (value if _is_stored(info) else decode_company_name(value)).strip()
    if not name:
        raise _fail("required", "is required.")
    if _BAD_CHARS.search(name):
        raise _fail("invalid", "must be one line without control characters.")
    why = " (Business Central's limit); write the name exactly as Business Central shows it"
    return _length_within(name, COMPANY_NAME_MAX, why)


def _department_source(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text not in ("department", "tag_group"):
        raise _fail(
            "invalid",
            "must be 'department' (Moment's department object) or 'tag_group' (a project tag "
            "group).",
        )
    return text


def _from_date(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise _fail("invalid", "must be a date such as 2026-01-01.") from None
    if value is None or type(value) is date:
        return value
    raise _fail("invalid", "must be a date such as 2026-01-01.")


def _notes(value: object) -> str | None:
    """Trimmed text of several lines; blank means "not set"."""
    says = "must not contain control characters other than line breaks."
    return _at_most(_trimmed(value, _BAD_TEXT_CHARS, says), NOTES_MAX)


def is_valid_email(address: str) -> bool:
    """A sane check of one e-mail address: ``local@domain.tld`` as mail servers accept it.

    The local part is an ASCII dot-atom (RFC 5322); the domain is made of DNS labels, may be
    internationalised (``ekonomi@företag.se``), and needs a top-level domain of letters.
    """
    if len(address) > EMAIL_MAX or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not local or len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local):
        return False
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    return len(ascii_domain) <= 253 and bool(_DOMAIN.fullmatch(ascii_domain))


def _email(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    local, _, domain = text.rpartition("@")
    # Domains are case-insensitive; the local part is kept as typed.
    address = f"{local}@{domain.lower()}" if local else text
    if not is_valid_email(address):
        raise _fail(
            "invalid",
            ": '{value}' is not a valid e-mail address; write it like ekonomi@example.se.",
            value=text,
        )
    return address


def _user_id(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if len(text) > USER_ID_MAX or not _USER_ID.fullmatch(text):
        raise _fail(
            "invalid", ": '{value}' is not the id of a Moment user.", value=text[:USER_ID_MAX]
        )
    return text


Code = Annotated[str | None, BeforeValidator(_code)]


class DefaultClientId(Protocol):
    """Where the installation's default Entra app is named: the settings, or the BC client's
    :class:`~worker.bc.BcEndpoints`."""

    @property
    def client_id(self) -> str | None: ...


def effective_client_id(client_id: str | None, settings: DefaultClientId) -> str:
    """``client_id`` when given, else the installation's default (``BC_SYNC_CLIENT_ID``)."""
    if client_id:
        return client_id
    if settings.client_id:
        return settings.client_id.strip().lower()
    raise ConfigValidationError(
        [
            {
                "field": "client_id",
                "code": "required",
                "message": "Client ID is required: this installation has no default "
                "application (client) ID, so enter the one of your Entra app.",
            }
        ]
    )


# ---------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    # Inputs are never echoed in pydantic's own error texts: one of them may be the secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_when_stored(cls, data: Any, info: ValidationInfo) -> Any:
        # A row written by a newer release may carry fields this one does not know yet.
        if _is_stored(info) and isinstance(data, Mapping):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data


class PostingGroups(_Model):
    """The posting groups a customer gets for one kind of invoice address."""

    gen_bus_posting_group: Code = None
    customer_posting_group: Code = None


class CustomerPostingGroups(_Model):
    """Domestic = the invoice address is in the BC company's country; abroad = elsewhere."""

    domestic: PostingGroups = Field(default_factory=PostingGroups)
    abroad: PostingGroups = Field(default_factory=PostingGroups)

    @field_validator("domestic", "abroad", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value


class Recipient(_Model):
    """Who is notified: a Moment user (``{"user_id": …}``) or an e-mail address.

    A plain string is accepted as a shorthand: with an ``@`` it is an e-mail address, otherwise
    a user id.
    """

    user_id: Annotated[str | None, BeforeValidator(_user_id)] = None
    email: Annotated[str | None, BeforeValidator(_email)] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            text = data.strip()
            return {"email": text} if "@" in text else {"user_id": text}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Recipient:
        if (self.user_id is None) == (self.email is None):
            raise _fail(
                "invalid",
                "must be either a Moment user or an e-mail address"
                + (", not both." if self.user_id else "."),
            )
        return self

    @model_serializer(mode="plain")
    def _as_dict(self) -> dict[str, str]:
        return (
            {"user_id": self.user_id} if self.user_id is not None else {"email": self.email or ""}
        )

    @property
    def key(self) -> tuple[str, str]:
        """Identity for de-duplication: e-mail addresses compare case-insensitively."""
        if self.user_id is not None:
            return ("user_id", self.user_id)
        return ("email", (self.email or "").casefold())


class IntegrationConfig(_Model):
    """The Business Central integration of one Moment organization: the dialog's fields.

    ``client_secret`` is ``None`` when an update leaves it unchanged (the store keeps the
    stored one); a config loaded from the store always carries it.
    """

    tenant_id: Annotated[str, BeforeValidator(_tenant_id)]
    client_id: Annotated[str | None, BeforeValidator(_client_id)] = None
    client_secret: Annotated[SecretStr | None, BeforeValidator(_client_secret)] = None
    environment: Annotated[str, BeforeValidator(_environment)]
    company_name: str

    export_customers: bool = False
    customer_posting_groups: CustomerPostingGroups = Field(default_factory=CustomerPostingGroups)

    export_projects: bool = False
    project_dimension: Code = None

    export_invoices: bool = False
    department_dimension: Code = None
    department_source: Annotated[
        Literal["department", "tag_group"] | None, BeforeValidator(_department_source)
    ] = None
    department_tag_group: Annotated[str | None, BeforeValidator(_limited(TAG_GROUP_MAX))] = None

    import_expenses: bool = False
    expenses_from_date: Annotated[date | None, BeforeValidator(_from_date)] = None
    expense_activity: Annotated[str | None, BeforeValidator(_limited(EXPENSE_ACTIVITY_MAX))] = None
    expenses_billable: bool | None = None

    # Payments of the invoices bc-sync exported, posted on or after the from date, go back to
    # Moment (bc.invoice.paid / bc.invoice.payment_updated).
    import_payments: bool = False
    payments_from_date: Annotated[date | None, BeforeValidator(_from_date)] = None

    notification_recipients: tuple[Recipient, ...] = Field(default=(), max_length=RECIPIENTS_MAX)
    notes: Annotated[str | None, BeforeValidator(_notes)] = None

    @field_validator("company_name", mode="before")
    @classmethod
    def _company(cls, value: object, info: ValidationInfo) -> str:
        return _company_name(value, info)

    @field_validator("customer_posting_groups", mode="before")
    @classmethod
    def _groups_none(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("notification_recipients", mode="before")
    @classmethod
    def _recipients_none(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("notification_recipients")
    @classmethod
    def _dedupe(cls, value: tuple[Recipient, ...]) -> tuple[Recipient, ...]:
        seen: set[tuple[str, str]] = set()
        unique: list[Recipient] = []
        for recipient in value:
            if recipient.key not in seen:
                seen.add(recipient.key)
                unique.append(recipient)
        return tuple(unique)

    @model_validator(mode="after")
    def _conditional(self, info: ValidationInfo) -> IntegrationConfig:
        # A stored config was valid when saved; a later, stricter rule must not stop the worker.
        if _is_stored(info):
            return self
        errors = _conditional_errors(lambda path: _attr_path(self, path))
        if errors:
            raise PydanticCustomError(
                "config_conditional",
                "{summary}",
                {
                    "summary": "; ".join(e["message"] for e in errors),
                    "errors": errors,
                },
            )
        return self

    # -- helpers for the worker and the API ----------------------------------------------------

    @property
    def recipient_emails(self) -> list[str]:
        """The e-mail recipients, in the configured order."""
        return [r.email for r in self.notification_recipients if r.email is not None]

    @property
    def recipient_user_ids(self) -> list[str]:
        """The Moment users to notify, in the configured order."""
        return [r.user_id for r in self.notification_recipients if r.user_id is not None]

    def effective_client_id(self, settings: DefaultClientId) -> str:
        """The Entra app (client) id: this config's own, else the installation's default."""
        return effective_client_id(self.client_id, settings)

    def to_storage_dict(self) -> dict[str, Any]:
        """JSON-ready fields without the secret (the store keeps it encrypted on its own)."""
        return self.model_dump(mode="json", exclude={"client_secret"})

    def to_public_dict(self) -> dict[str, Any]:
        """What users may see: every field, the secret replaced by ``client_secret_set``."""
        public: dict[str, Any] = {}
        for key, value in self.to_storage_dict().items():
            public[key] = value
            if key == "client_id":
                public["client_secret_set"] = self.client_secret is not None
        return public

    def public_view(self) -> dict[str, Any]:
        """Same as :meth:`to_public_dict`."""
        return self.to_public_dict()

    def with_secret(self, secret: SecretStr | str | None) -> IntegrationConfig:
        """A copy carrying ``secret`` (e.g. the stored one when an update left it blank)."""
        value = secret if isinstance(secret, SecretStr) or secret is None else SecretStr(secret)
        return self.model_copy(update={"client_secret": value})

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], secret: str | None) -> IntegrationConfig:
        """Rebuild a config from the store's JSON without decoding the company name again."""
        values = dict(data)
        values["client_secret"] = secret
        return cls.model_validate(values, context={"stored": True})


# ---------------------------------------------------------------------------------------------
# Conditional rules and error messages

# Field path → the dialog's label, used to start every message.
LABELS: dict[str, str] = {
    "tenant_id": "Tenant ID",
    "client_id": "Client ID",
    "client_secret": "Client Secret",
    "environment": "Environment",
    "company_name": "Company name",
    "export_customers": "Export customers",
    "customer_posting_groups": "Posting groups",
    "export_projects": "Export projects",
    "project_dimension": "Project dimension",
    "export_invoices": "Export invoices",
    "department_dimension": "Department dimension",
    "department_source": "Department source",
    "department_tag_group": "Project tag group for departments",
    "import_expenses": "Import expenses",
    "expenses_from_date": "From date",
    "expense_activity": "Expense activity",
    "expenses_billable": "Imported expenses will be set as billable",
    "import_payments": "Import payments",
    "payments_from_date": "From date for payments",
    "notification_recipients": "Notification recipients",
    "notes": "Notes",
}
for _where in ("domestic", "abroad"):
    LABELS[f"customer_posting_groups.{_where}"] = f"Posting groups for {_where} invoice addresses"
    LABELS[f"customer_posting_groups.{_where}.gen_bus_posting_group"] = (
        f"Gen. business posting group for {_where} invoice addresses"
    )
    LABELS[f"customer_posting_groups.{_where}.customer_posting_group"] = (
        f"Customer posting group for {_where} invoice addresses"
    )

_POSTING_GROUP_FIELDS = [
    f"customer_posting_groups.{where}.{kind}"
    for where in ("domestic", "abroad")
    for kind in ("gen_bus_posting_group", "customer_posting_group")
]


def _attr_path(obj: object, path: str) -> object:
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def _raw_path(data: Mapping[str, Any], path: str) -> object:
    obj: object = data
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


def _on(value: object) -> bool:
    try:
        return bool(_BOOL.validate_python(value)) if value is not None else False
    except ValidationError:
        return False


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _conditional_errors(get: Callable[[str], object]) -> list[FieldError]:
    """The "required when switched on" rules of the dialog, plus conflicts between fields."""
    errors: list[FieldError] = []

    def need(path: str, when: str, message: str | None = None) -> None:
        if not _present(get(path)):
            text = message or f"{LABELS[path]} is required when {when} is on."
            errors.append({"field": path, "code": "required", "message": text})

    if _on(get("export_customers")):
        for path in _POSTING_GROUP_FIELDS:
            need(path, "Export customers")
    if _on(get("export_projects")):
        need("project_dimension", "Export projects")
    if _on(get("export_invoices")):
        need("department_dimension", "Export invoices")
        need(
            "department_source",
            "Export invoices",
            "Department source is required when Export invoices is on: choose whether departments "
            "come from Moment's department object or from a project tag group.",
        )
        source = get("department_source")
        if isinstance(source, str) and source.strip() == "tag_group":
            need(
                "department_tag_group",
                "",
                "Project tag group for departments is required when departments come from a "
                "project tag group: write the name of the tag group as it is in Moment.",
            )
        project, department = get("project_dimension"), get("department_dimension")
        if (
            isinstance(project, str)
            and isinstance(department, str)
            and project.strip()
            and _bc_upper(project.strip()) == _bc_upper(department.strip())
        ):
            errors.append(
                {
                    "field": "department_dimension",
                    "code": "conflict",
                    "message": "Department dimension must differ from Project dimension: an "
                    "invoice line carries both, each with its own value.",
                }
            )
    if _on(get("import_expenses")):
        if not _on(get("export_projects")):  # else already required above
            # Only lines carrying a value of this dimension are project expenses.
            need("project_dimension", "Import expenses")
        need("expenses_from_date", "Import expenses")
        need("expense_activity", "Import expenses")
        need(
            "expenses_billable",
            "Import expenses",
            "Imported expenses will be set as billable is required when Import expenses is on: "
            "choose yes or no.",
        )
    if _on(get("import_payments")):
        need(
            "payments_from_date",
            "Import payments",
            "From date for payments is required when Import payments is on: payments are "
            "imported for the invoices posted in Business Central on or after it.",
        )
    return errors


def _label(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "notification_recipients" and isinstance(loc[1], int):
        return f"Notification recipient {loc[1] + 1}"
    path = ".".join(str(p) for p in loc)
    return LABELS.get(path, f"'{path}'" if path else "The configuration")


def _sentence(label: str, fragment: str) -> str:
    # Fragments continue the label ("must be …") or, starting with ":", explain after it.
    return f"{label}{fragment}" if fragment.startswith(":") else f"{label} {fragment}"


_DATE_TYPES = {
    "date_type",
    "date_parsing",
    "date_from_datetime_parsing",
    "date_from_datetime_inexact",
}


def _translate(err: Mapping[str, Any]) -> list[FieldError]:
    kind: str = err["type"]
    loc: tuple[int | str, ...] = tuple(err["loc"])
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    field = ".".join(str(p) for p in loc)
    label = _label(loc)
    if kind == "config_conditional":
        return list(ctx.get("errors", []))
    if kind.startswith("config_"):
        return [
            {
                "field": field,
                "code": kind.removeprefix("config_"),
                "message": _sentence(label, err["msg"]),
            }
        ]
    code, text = "invalid", f"is not valid ({err['msg']})."
    if kind == "missing":
        code, text = "required", "is required."
    elif kind == "extra_forbidden":
        code, text = "unknown", "is not a setting of the Business Central integration; remove it."
    elif kind in ("bool_type", "bool_parsing"):
        text = "must be on or off (true or false)."
    elif kind in _DATE_TYPES:
        text = "must be a date such as 2026-01-01."
    elif kind in ("string_type", "string_unicode"):
        text = "must be text."
    elif kind in ("list_type", "tuple_type"):
        text = "must be a list."
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = "must be an object with its own fields."
    elif kind == "too_long":
        code = "too_long"
        text = f"can have at most {ctx.get('max_length')} entries."
    return [{"field": field, "code": code, "message": f"{label} {text}"}]


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Turn pydantic's errors for an :class:`IntegrationConfig` into field-level errors."""
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False):
        for item in _translate(err):
            if item not in errors:
                errors.append(item)
    return errors


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def parse_config(data: Mapping[str, Any] | Any) -> IntegrationConfig:
    """Validate a configuration body; raise :class:`ConfigValidationError` listing every problem.

    When some fields are malformed, the "required when switched on" rules are still checked on
    the raw input, so that one save shows all that needs fixing.
    """
    try:
        return IntegrationConfig.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
    if isinstance(data, Mapping):
        for extra in _conditional_errors(lambda path: _raw_path(data, path)):
            if not any(_related(extra["field"], e["field"]) for e in errors):
                errors.append(extra)
    raise ConfigValidationError(errors)


# ---------------------------------------------------------------------------------------------
# The options call: just the connection fields of the dialog


def _optional_company_name(value: object, info: ValidationInfo) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _company_name(value, info)


class ConnectionFields(_Model):
    """The dialog's connection fields, as the options call receives them.

    Other fields of the dialog may come along (the dialog posts its whole form) and are
    ignored; the company name is optional (without it only the companies are listed), and so
    is the secret (the stored one is used when the organization has one).
    """

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    tenant_id: Annotated[str, BeforeValidator(_tenant_id)]
    client_id: Annotated[str | None, BeforeValidator(_client_id)] = None
    client_secret: Annotated[SecretStr | None, BeforeValidator(_client_secret)] = None
    environment: Annotated[str, BeforeValidator(_environment)]
    company_name: str | None = None

    @field_validator("company_name", mode="before")
    @classmethod
    def _company(cls, value: object, info: ValidationInfo) -> str | None:
        return _optional_company_name(value, info)

    def effective_client_id(self, settings: DefaultClientId) -> str:
        """This request's client id, else the installation's default (as for a config)."""
        return effective_client_id(self.client_id, settings)


def parse_connection_fields(data: Mapping[str, Any] | Any) -> ConnectionFields:
    """Validate the options call's body; raise :class:`ConfigValidationError` per field."""
    try:
        return ConnectionFields.model_validate(data)
    except ValidationError as exc:
        raise ConfigValidationError(field_errors(exc)) from None
