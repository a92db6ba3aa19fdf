"""Business Central errors → failure classes with stable codes and words a Moment admin reads."""

from __future__ import annotations

import re

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
from worker.errors import HandlerError, Permanent, Transient

# BC's table-relation text: "The field No. of table Sales Line contains a value (9999) that
# cannot be found in the related table (G/L Account)."
_RELATION = re.compile(r"contains a value \((?P<value>[^)]*)\).*related table \((?P<table>[^)]*)\)")
# BC's record-not-found text: "The G/L Account does not exist. Identification fields and
# values: No.='9999'"
_MISSING = re.compile(
    r"The (?P<table>.+?) does not exist\. Identification fields and values: (?P<ident>.*)"
)

_TABLE_CODES = {
    "g/l account": ("BC-ACCOUNT-MISSING", "G/L account"),
    "customer": ("BC-CUSTOMER-MISSING", "Customer"),
    "gen. business posting group": ("BC-POSTING-GROUP-MISSING", "Gen. business posting group"),
    "customer posting group": ("BC-POSTING-GROUP-MISSING", "Customer posting group"),
    "dimension value": ("BC-DIMENSION-VALUE-MISSING", "Dimension value"),
    "dimension": ("BC-DIMENSION-MISSING", "Dimension"),
}


def missing_record(exc: BcError) -> tuple[str, str, str] | None:
    """(code, thing, value) when BC says a related record does not exist, else None."""
    text = exc.message or ""
    for pattern in (_RELATION, _MISSING):
        match = pattern.search(text)
        if not match:
            continue
        table = match.group("table").strip().lower()
        value = match.group("value") if "value" in match.groupdict() else match.group("ident")
        value = value.strip()
        quoted = re.search(r"'([^']*)'", value)
        if quoted:
            value = quoted.group(1)
        for name, (code, thing) in _TABLE_CODES.items():
            if table == name:
                return code, thing, value
    return None


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
    if code in ("BC-CREDENTIALS-REJECTED", "BC-THROTTLED", "BC-UNAVAILABLE"):
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
    if isinstance(exc, BcConflict) and exc.code == "Request_EntityChanged":
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
    if exc.transient:
        return "BC-UNAVAILABLE", exc.message
    return "BC-VALIDATION", f"Business Central rejected {subject}: {exc.message}"
