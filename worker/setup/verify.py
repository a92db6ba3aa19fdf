"""Verify an integration config against Business Central, and read the dialog's options
(bc-contract.md "Verify on save / options").

Every problem a Moment admin can fix becomes a field-level error (:class:`ConfigValidationError`)
that names the field, what is wrong and where to fix it (the Entra app, BC's "Microsoft Entra
Applications" or "Web Services" page, the names that do exist). When BC or Entra cannot be
reached, :class:`BcUnreachable` is raised instead: nothing is wrong with the config, try later.
Messages never contain the client secret.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import SecretStr

from worker.bc import (
    BcAuthError,
    BcCompanyNotFound,
    BcConnection,
    BcCredentials,
    BcEnvironmentNotFound,
    BcError,
    BcHub,
    BcPermissionDenied,
    BcServiceNotPublished,
    BcThrottled,
    BcUnavailable,
)
from worker.bc.models import Company, Dimension, PostingGroup
from worker.bc.pages import PAGE_DIMENSION_VALUES
from worker.config.model import (
    LABELS,
    ConfigValidationError,
    ConnectionFields,
    FieldError,
    IntegrationConfig,
)
from worker.log import redact_text

T = TypeVar("T")

# A save waits at most this long for BC; the dialog then shows the retry hint.
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRY_AFTER_S = 30.0
SUGGESTIONS = 3
# Names listed in one message at most (an environment may hold hundreds of companies).
LISTED_MAX = 25

POSTING_GROUP_FIELDS = tuple(
    (where, kind)
    for where in ("domestic", "abroad")
    for kind in ("gen_bus_posting_group", "customer_posting_group")
)


class BcUnreachable(Exception):
    """Business Central or Entra ID could not be reached (or answered out of turn): nothing is
    known to be wrong with the configuration. The API answers 502 with ``retry_after``."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_S


@dataclass(frozen=True)
class VerifiedFacts:
    """What BC says about one company: the drop-down data and the facts the worker relies on.

    Posting groups are ``None`` when they were not read (or their service is not published).
    """

    id: str
    name: str
    display_name: str
    country: str
    local_currency: str
    shortcut_dimensions: tuple[str, ...]
    dimensions: tuple[Dimension, ...]
    gen_bus_posting_groups: tuple[PostingGroup, ...] | None = None
    customer_posting_groups: tuple[PostingGroup, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON for the options call (and ``bc-sync verify --json``)."""
        shortcut = {code: n for n, code in enumerate(self.shortcut_dimensions, 1) if code}
        return {
            "company": {
                "id": self.id,
                "name": self.name,
                "display_name": self.display_name,
                "country": self.country,
                "local_currency": self.local_currency,
            },
            "dimensions": [
                {
                    "code": d.code,
                    "name": d.display_name,
                    "in_general_ledger_setup": d.code in shortcut,
                    "shortcut_dimension": shortcut.get(d.code),
                }
                for d in self.dimensions
            ],
            "gen_bus_posting_groups": _groups(self.gen_bus_posting_groups),
            "customer_posting_groups": _groups(self.customer_posting_groups),
        }


def _groups(groups: Sequence[PostingGroup] | None) -> list[dict[str, str]] | None:
    if groups is None:
        return None
    return [{"code": g.code, "description": g.description} for g in groups]


@dataclass
class Options:
    """The answer of the options call: companies, and the chosen company's facts if any.

    ``issues`` are field errors that kept a part from being read (company not found, a page
    not published); the rest is still answered so the dialog can fill what it can.
    """

    companies: list[Company]
    facts: VerifiedFacts | None = None
    issues: list[FieldError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "companies": [
                {"id": c.id, "name": c.name, "display_name": c.display_name} for c in self.companies
            ],
        }
        if self.facts is not None:
            answer.update(self.facts.to_dict())
        else:
            answer.update(
                company=None,
                dimensions=None,
                gen_bus_posting_groups=None,
                customer_posting_groups=None,
            )
        answer["issues"] = list(self.issues)
        return answer


# ---------------------------------------------------------------------------------------------
# Errors in plain words


@dataclass(frozen=True)
class _Subject:
    """Who and what a verification is about, for the messages."""

    tenant_id: str
    client_id: str
    own_client_id: bool  # the config sets its own (else the installation default is used)
    environment: str
    company_name: str

    @property
    def app_field(self) -> str:
        # The dialog has no client ID field when the installation's default app is used: the
        # tenant is then the setting the admin looks at.
        return "client_id" if self.own_client_id else "tenant_id"


def _error(field_: str, code: str, message: str) -> FieldError:
    return {"field": field_, "code": code, "message": redact_text(message)}


def _listed(names: Sequence[str], quote: bool = False) -> str:
    """``a, b, c`` (at most :data:`LISTED_MAX`, then how many more)."""
    shown = [f"'{n}'" if quote else n for n in names[:LISTED_MAX]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def did_you_mean(wanted: str, names: Sequence[str]) -> list[str]:
    """Close matches of ``wanted`` among ``names``: a different case first, then similar ones."""
    folded = wanted.casefold()
    other_case = [n for n in names if n.casefold() == folded and n != wanted]
    by_fold = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(folded, list(by_fold), n=SUGGESTIONS, cutoff=0.6)
    found = other_case + [by_fold[c] for c in close if by_fold[c] not in other_case]
    return found[:SUGGESTIONS]


def _suggest(wanted: str, names: Sequence[str]) -> str:
    matches = did_you_mean(wanted, names)
    if not matches:
        return ""
    return f" Did you mean {' or '.join(_q(m) for m in matches)}?"


def _q(name: str) -> str:
    return f"'{name}'"


def company_not_found(subject: _Subject, available: Sequence[str]) -> FieldError:
    """The company name error: the names that exist, and the closest ones."""
    wanted = subject.company_name
    names = sorted(available, key=str.casefold)
    there = f" Companies there: {_listed(names, quote=True)}." if names else ""
    return _error(
        "company_name",
        "not_found",
        f"Company name: there is no company named '{wanted}' in environment "
        f"'{subject.environment}'.{_suggest(wanted, available)}{there} Write the name exactly "
        "as Business Central shows it.",
    )


def _missing_code(
    field_: str, code: str, what: str, company: str, available: Sequence[str]
) -> FieldError:
    label = LABELS.get(field_, field_)
    there = f" Codes there: {_listed(sorted(available))}." if available else " It has none."
    return _error(
        field_,
        "not_found",
        f"{label}: '{code}' does not exist in company '{company}' ({what})."
        f"{_suggest(code, available)}{there}",
    )


def translate(exc: BcError, subject: _Subject) -> FieldError:
    """The field error for one BC/Entra failure; raises :class:`BcUnreachable` when the failure
    says nothing about the config."""
    if isinstance(exc, BcThrottled | BcUnavailable) or (
        exc.transient and not isinstance(exc, BcAuthError)
    ):
        retry_after = getattr(exc, "retry_after", None)
        raise BcUnreachable(
            "Business Central could not be reached to verify the settings "
            f"({redact_text(exc.message)}). Nothing was saved; try again in a minute.",
            retry_after=retry_after,
        ) from None
    if isinstance(exc, BcEnvironmentNotFound):
        return _error(
            "environment",
            "not_found",
            f"Environment: tenant '{subject.tenant_id}' has no Business Central environment "
            f"named '{subject.environment}'. Write the name as the Business Central admin "
            "center shows it, for example Production or Sandbox.",
        )
    if isinstance(exc, BcCompanyNotFound):
        return company_not_found(subject, exc.available)
    if isinstance(exc, BcServiceNotPublished):
        dimension_values = exc.page == PAGE_DIMENSION_VALUES
        what = (
            "Project dimension values cannot be written"
            if dimension_values
            else "Posting groups cannot be used"
        )
        return _error(
            "project_dimension" if dimension_values else "customer_posting_groups",
            "service_not_published",
            f"{what} in company '{subject.company_name}': the page "
            f"{exc.page} is not published as a web service. In Business Central, open the "
            f"'Web Services' page, add Object Type Page, Object ID and Name of {exc.page}, "
            f"Service Name '{exc.service}', and tick Published.",
        )
    if isinstance(exc, BcPermissionDenied):
        return _error(
            subject.app_field,
            "permission_denied",
            f"The app (client ID {subject.client_id}) lacks permissions in Business Central. "
            "Open Business Central's 'Microsoft Entra Applications' page, select the app and "
            "assign permission sets (for example D365 BUS FULL ACCESS).",
        )
    if isinstance(exc, BcAuthError):
        return _auth_error(exc, subject)
    raise BcUnreachable(
        f"Business Central answered unexpectedly while verifying the settings "
        f"({redact_text(str(exc))}). Nothing was saved; try again later.",
    ) from None


def _auth_error(exc: BcAuthError, subject: _Subject) -> FieldError:
    code = exc.code or ""
    if exc.status == 401:
        # Entra issued a token, but BC refuses the app: it is not set up in BC.
        return _error(
            subject.app_field,
            "app_not_set_up_in_bc",
            f"Business Central does not accept the app (client ID {subject.client_id}). In "
            "Business Central, open the 'Microsoft Entra Applications' page, add this client "
            "ID, set State to Enabled and assign permission sets (for example D365 BUS FULL "
            "ACCESS).",
        )
    if exc.field == "tenant_id":
        return _error(
            "tenant_id",
            "unknown_tenant",
            f"Tenant ID: Microsoft Entra ID does not know the tenant '{subject.tenant_id}'. Use "
            "the tenant's directory ID (a GUID, shown in Business Central under Help & Support) "
            "or its domain, such as contoso.onmicrosoft.com.",
        )
    if exc.field == "client_secret":
        expired = code == "AADSTS7000222"
        return _error(
            "client_secret",
            "secret_expired" if expired else "secret_rejected",
            (
                f"Client Secret has expired for the app (client ID {subject.client_id}); "
                "create a new secret and enter it here."
                if expired
                else f"Client Secret was rejected by Microsoft Entra ID for the app (client ID "
                f"{subject.client_id}) in tenant '{subject.tenant_id}'. Enter the secret's "
                "Value (not its Secret ID) and check that it has not expired."
            ),
        )
    if exc.field == "client_id":
        return _error(
            subject.app_field,
            "app_not_found",
            f"The app (client ID {subject.client_id}) is not registered or not consented in "
            f"tenant '{subject.tenant_id}' ({code or 'refused'}). Ask the tenant's "
            "administrator to grant admin consent to the app for Business Central.",
        )
    return _error(
        "client_secret",
        "credentials_rejected",
        f"Microsoft Entra ID refused a token for the app (client ID {subject.client_id}) in "
        f"tenant '{subject.tenant_id}' ({code or 'no error code'}). Check the tenant ID and "
        "the client secret.",
    )


# ---------------------------------------------------------------------------------------------
# The calls


def _start(
    source: IntegrationConfig | ConnectionFields, hub: BcHub, secret: SecretStr | None
) -> tuple[_Subject, SecretStr]:
    """Who the check is about, and the secret to use (``secret`` overrides the source's own:
    the stored one, for an update or an options call that left it out)."""
    secret = secret or source.client_secret
    if secret is None:
        raise ConfigValidationError(
            [_error("client_secret", "required", "Client Secret is required.")]
        )
    subject = _Subject(
        source.tenant_id,
        source.effective_client_id(hub.endpoints),
        source.client_id is not None,
        source.environment,
        source.company_name or "",
    )
    return subject, secret


def _connection(hub: BcHub, subject: _Subject, secret: SecretStr) -> BcConnection:
    # The name is already decoded (IntegrationConfig): no second decoding here.
    credentials = BcCredentials(
        tenant_id=subject.tenant_id,
        client_id=subject.client_id,
        client_secret=secret,
        environment=subject.environment,
        company_name=subject.company_name or "-",
    )
    try:
        return hub.connection(credentials)
    except BcError as exc:
        raise ConfigValidationError([translate(exc, subject)]) from None


async def _one(call: Awaitable[T], subject: _Subject) -> T:
    try:
        return await call
    except BcError as exc:
        raise ConfigValidationError([translate(exc, subject)]) from None


async def _gather(
    calls: dict[str, Awaitable[Any]], subject: _Subject
) -> tuple[dict[str, Any], list[FieldError]]:
    """Run independent calls at once; results by name, plus the field errors of failures.

    A failure that makes the whole verification moot (BC unreachable) is raised after every
    call has finished, so none is left running.
    """
    names = list(calls)
    outcomes = await asyncio.gather(*calls.values(), return_exceptions=True)
    results: dict[str, Any] = {}
    errors: list[FieldError] = []
    unreachable: BcUnreachable | None = None
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, BcError):
            try:
                error = translate(outcome, subject)
            except BcUnreachable as exc:
                unreachable = unreachable or exc
                continue
            if error not in errors:
                errors.append(error)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results[name] = outcome
    if unreachable is not None:
        raise unreachable
    return results, errors


async def _company_facts(
    conn: BcConnection,
    subject: _Subject,
    company: Company,
    *,
    posting_groups: bool,
    dimension_values: bool = False,
    sales_invoices: bool = False,
) -> tuple[VerifiedFacts | None, list[FieldError]]:
    calls: dict[str, Awaitable[Any]] = {
        "info": conn.company_information(),
        "setup": conn.general_ledger_setup(),
        "dimensions": conn.dimensions(),
    }
    if posting_groups:
        calls["gen_bus"] = conn.gen_bus_posting_groups()
        calls["customer"] = conn.customer_posting_groups()
        calls["customer_card"] = conn.probe_customer_card()
    if dimension_values:
        calls["dimension_values"] = conn.probe_dimension_values()
    if sales_invoices:  # the payment import reads them (a permission problem shows here)
        calls["sales_invoices"] = conn.probe_sales_invoices()
    results, errors = await _gather(calls, subject)
    if not {"info", "setup", "dimensions"} <= results.keys():
        return None, errors
    gen_bus, customer = results.get("gen_bus"), results.get("customer")
    facts = VerifiedFacts(
        id=company.id,
        name=company.name,
        display_name=company.display_name or results["info"].display_name,
        country=results["info"].country,
        local_currency=results["setup"].local_currency_code or results["info"].currency_code,
        shortcut_dimensions=results["setup"].shortcut_dimension_codes,
        dimensions=tuple(results["dimensions"]),
        gen_bus_posting_groups=tuple(gen_bus) if gen_bus is not None else None,
        customer_posting_groups=tuple(customer) if customer is not None else None,
    )
    return facts, errors


def _find(companies: Sequence[Company], name: str) -> Company | None:
    # BC matches the name exactly (after decoding): no case folding, no trimming.
    return next((c for c in companies if c.name == name), None)


async def _companies(conn: BcConnection, subject: _Subject) -> list[Company]:
    # The token first: Entra's answer names the tenant or the secret precisely.
    await _one(conn.get_token(), subject)
    return await _one(conn.list_companies(), subject)


def _check_choices(config: IntegrationConfig, facts: VerifiedFacts) -> list[FieldError]:
    """The config's dimensions and posting groups against what the company has."""
    errors: list[FieldError] = []
    dimension_codes = [d.code for d in facts.dimensions]
    wanted: list[tuple[str, str | None]] = []
    if config.export_projects:
        wanted.append(("project_dimension", config.project_dimension))
    if config.export_invoices:
        wanted.append(("department_dimension", config.department_dimension))
    for name, code in wanted:
        if code and code not in dimension_codes:
            errors.append(_missing_code(name, code, "Dimensions", facts.name, dimension_codes))
    if config.export_customers:
        lists = {
            "gen_bus_posting_group": ("Gen. Business Posting Groups", facts.gen_bus_posting_groups),
            "customer_posting_group": ("Customer Posting Groups", facts.customer_posting_groups),
        }
        for where, kind in POSTING_GROUP_FIELDS:
            what, groups = lists[kind]
            if groups is None:
                continue  # not readable: its own error says why
            code = getattr(getattr(config.customer_posting_groups, where), kind)
            codes = [g.code for g in groups]
            if code and code not in codes:
                path = f"customer_posting_groups.{where}.{kind}"
                errors.append(_missing_code(path, code, what, facts.name, codes))
    return errors


@asynccontextmanager
async def _answer_within(timeout_s: float, then: str) -> AsyncIterator[None]:
    """:class:`BcUnreachable` when BC's answers take longer than ``timeout_s`` in all; ``then``
    ends the sentence (what to do)."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise BcUnreachable(
            f"Business Central did not answer within {timeout_s:g} seconds{then}"
        ) from None


async def verify(
    config: IntegrationConfig,
    hub: BcHub,
    *,
    secret: SecretStr | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> VerifiedFacts:
    """Check ``config`` against BC (bc-contract.md steps 1-5); return what BC said.

    ``secret`` overrides the config's own (the stored secret for an update that left it out).
    Raises :class:`ConfigValidationError` with every problem found, or :class:`BcUnreachable`.
    """
    subject, secret = _start(config, hub, secret)
    async with _answer_within(timeout_s, ". Nothing was saved; try again in a minute."):
        conn = _connection(hub, subject, secret)
        # The token first: Entra's answer names the tenant or the secret precisely.
        await _one(conn.get_token(), subject)
        # Lists the companies once (then cached by the hub); not found names the others.
        company_id = await _one(conn.company_id(), subject)
        company = Company(company_id, config.company_name, "")
        facts, errors = await _company_facts(
            conn,
            subject,
            company,
            posting_groups=config.export_customers,
            dimension_values=config.export_projects,
            sales_invoices=config.import_payments,
        )
    if facts is not None:
        errors.extend(_check_choices(config, facts))
    if errors or facts is None:
        raise ConfigValidationError(errors)
    return facts


async def options(
    fields: ConnectionFields,
    hub: BcHub,
    *,
    secret: SecretStr | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Options:
    """The dialog's drop-down data for these credentials (bc-contract.md steps 1-5).

    Credential problems raise :class:`ConfigValidationError`; a company that is not found or
    a page that is not published are ``issues`` of an otherwise complete answer.
    """
    subject, secret = _start(fields, hub, secret)
    async with _answer_within(timeout_s, "; try again in a minute."):
        conn = _connection(hub, subject, secret)
        companies = await _companies(conn, subject)
        answer = Options(companies)
        if fields.company_name is None:
            return answer
        company = _find(companies, fields.company_name)
        if company is None:
            answer.issues.append(company_not_found(subject, [c.name for c in companies]))
            return answer
        answer.facts, answer.issues = await _company_facts(
            conn, subject, company, posting_groups=True, dimension_values=True
        )
        return answer
