"""Business Central errors → the worker's error codes and failure classes, in words a Moment
admin reads.

This is the one mapping from BC errors to the codes of ``worker.errors.CATALOGUE``
(:func:`catalogue_code`; :func:`classify` adds the message and the failure class). ``worker.bc``
only states BC's facts (status, code, message, transient / permanent / auth); what they mean
for Moment is decided here. A related record BC reports missing is recognised by BC's error
code and the structure of its message (:func:`worker.bc.errors.facts`), never by its wording
alone.
"""

from __future__ import annotations

from worker.bc import (
    BcAuthError,
    BcCompanyNotFound,
    BcConflict,
    BcEnvironmentNotFound,
    BcError,
    BcPermissionDenied,
    BcServiceNotPublished,
    BcThrottled,
    BcUnavailable,
)
from worker.bc.errors import ENTITY_CHANGED, facts
from worker.errors import HandlerError, Permanent, Transient

# The related table BC names (its English caption: the client asks for English) → our code.
_TABLE_CODES = {
    "g/l account": ("BC-ACCOUNT-MISSING", "G/L account"),
    "customer": ("BC-CUSTOMER-MISSING", "Customer"),
    "gen. business posting group": ("BC-POSTING-GROUP-MISSING", "Gen. business posting group"),
    "customer posting group": ("BC-POSTING-GROUP-MISSING", "Customer posting group"),
    "dimension value": ("BC-DIMENSION-VALUE-MISSING", "Dimension value"),
    "dimension": ("BC-DIMENSION-MISSING", "Dimension"),
}
_TRANSIENT_CODES = ("BC-CREDENTIALS-REJECTED", "BC-THROTTLED", "BC-UNAVAILABLE")


def missing_record(exc: BcError) -> tuple[str, str, str] | None:
    """(code, thing, value) when BC says a related record does not exist, else None.

    Read from BC's table-relation and record-not-found errors (``Internal_InvalidTableRelation``,
    ``Internal_RecordNotFound``): the related table decides the code, the value is the one in
    parentheses or the missing record's key. A table we do not know gives None (the generic
    code with BC's own words), never a guess.
    """
    found = facts(exc)
    if not found.missing_record or found.related_table is None or found.value is None:
        return None
    known = _TABLE_CODES.get(found.related_table.casefold())
    if known is None:
        return None
    code, thing = known
    return code, thing, found.value


def catalogue_code(exc: BcError) -> str:
    """The worker's error code (``worker.errors.CATALOGUE``) for a BC error."""
    return _code_and_message(exc, "the request", "")[0]


# What the healer looks for in BC, per record kind of ``_TABLE_CODES`` (a dimension value's
# dimension is not in BC's text, so it has no fact here: the handlers name it themselves).
_FACT_KINDS = {
    "G/L account": "gl_account",
    "Customer": "customer",
    "Gen. business posting group": "gen_bus_posting_group",
    "Customer posting group": "customer_posting_group",
    "Dimension": "dimension",
}


def missing_facts(exc: BcError) -> list[dict[str, str]]:
    """``[{"kind": …, "value": …}]`` when BC says a related record does not exist."""
    found = missing_record(exc)
    if found is None or found[1] not in _FACT_KINDS or not found[2]:
        return []
    return [{"kind": _FACT_KINDS[found[1]], "value": found[2]}]


def classify(exc: BcError, *, subject: str, company: str) -> HandlerError:
    """The failure class for a BC error raised while syncing ``subject`` in ``company``."""
    code, message = _code_and_message(exc, subject, company)
    if code in _TRANSIENT_CODES:
        return Transient(
            code,
            message,
            retry_after=getattr(exc, "retry_after", None),
            notify=code == "BC-CREDENTIALS-REJECTED",
            bc_status=exc.status,
            bc_code=exc.code,
            subject=subject,
        )
    return Permanent(
        code,
        message,
        bc_status=exc.status,
        bc_code=exc.code,
        subject=subject,
        missing=missing_facts(exc),
    )


def _code_and_message(exc: BcError, subject: str, company: str) -> tuple[str, str]:
    if isinstance(exc, BcAuthError | BcPermissionDenied):
        return (
            "BC-CREDENTIALS-REJECTED",
            f"Business Central rejected the integration's credentials: {exc.message}",
        )
    if isinstance(exc, BcThrottled):
        return "BC-THROTTLED", exc.message
    if isinstance(exc, BcUnavailable):
        return "BC-UNAVAILABLE", exc.message
    if isinstance(exc, BcConflict) and exc.code == ENTITY_CHANGED:
        return "BC-UNAVAILABLE", "The record was changed concurrently."
    if isinstance(exc, BcEnvironmentNotFound):
        return "BC-ENVIRONMENT-MISSING", exc.message
    if isinstance(exc, BcCompanyNotFound):
        return "BC-COMPANY-MISSING", f"Company '{company}' was not found in Business Central."
    if isinstance(exc, BcServiceNotPublished):
        return "BC-SERVICE-NOT-PUBLISHED", exc.message
    found = missing_record(exc)
    if found is not None:
        code, thing, value = found
        return code, f"{thing} '{value}' does not exist in company '{company}'."
    if exc.transient:  # a concurrent create (duplicate key): re-read and retry later
        return "BC-UNAVAILABLE", exc.message
    return "BC-VALIDATION", f"Business Central rejected {subject}: {exc.message}"
