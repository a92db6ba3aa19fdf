"""The one mapping from BC errors to the worker's error codes (``worker.sync.errors``), and the
one answer for a code the catalogue does not know."""

from __future__ import annotations

import json

import pytest

from worker.bc.errors import BcError, BcServiceNotPublished, from_response
from worker.errors import CATALOGUE, UNKNOWN, info
from worker.sync.errors import catalogue_code, classify

CORR = "5f2a1c3e-9b8d-4e7f-a6b5-c4d3e2f1a0b9"


def body(code: str, message: str) -> bytes:
    return json.dumps(
        {"error": {"code": code, "message": f"{message}  CorrelationId:  {CORR}."}}
    ).encode()


# Moved from test_bc_errors (``bc`` no longer knows the catalogue): every class maps to a code
# of the catalogue, and the same code classify() reports.
@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "Application_DialogException", "BC-VALIDATION"),
        (400, "BadRequest_InvalidToken", "BC-VALIDATION"),
        (401, "Authentication_InvalidCredentials", "BC-CREDENTIALS-REJECTED"),
        (403, "Authorization_Forbidden", "BC-CREDENTIALS-REJECTED"),
        (404, "NoEnvironment", "BC-ENVIRONMENT-MISSING"),
        (404, "BadRequest_ResourceNotFound", "BC-VALIDATION"),
        (404, "Internal_CompanyNotFound", "BC-COMPANY-MISSING"),
        (409, "Request_EntityChanged", "BC-UNAVAILABLE"),
        (409, "Internal_EntityWithSameKeyExists", "BC-UNAVAILABLE"),
        (400, "Internal_EntityWithSameKeyExists", "BC-UNAVAILABLE"),
        (429, "TooManyRequests", "BC-THROTTLED"),
        (408, "RequestTimeout", "BC-UNAVAILABLE"),
        (500, "Internal_ServerError", "BC-UNAVAILABLE"),
        (503, "Internal_TenantUnavailable", "BC-UNAVAILABLE"),
    ],
)
def test_every_bc_error_maps_to_a_catalogue_code(status: int, code: str, expected: str) -> None:
    err = from_response(status, body(code, "Something happened."))
    assert catalogue_code(err) in CATALOGUE
    assert catalogue_code(err) == expected
    assert classify(err, subject="customer 1", company="C").code == expected


def test_service_not_published_has_its_own_code() -> None:
    err = BcServiceNotPublished("CustomerCard", "Customer Card (page 21)", status=404)
    assert catalogue_code(err) == "BC-SERVICE-NOT-PUBLISHED"


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "Internal_InvalidTableRelation",
            "The field No. of table Sales Line contains a value (9999) that cannot be found in "
            "the related table (G/L Account).",
            "BC-ACCOUNT-MISSING",
        ),
        (
            "Internal_RecordNotFound",
            "The Customer does not exist. Identification fields and values: No.='10006'",
            "BC-CUSTOMER-MISSING",
        ),
        # The same words under another code are not a missing record: BC's code decides.
        (
            "Application_DialogException",
            "The Customer does not exist. Identification fields and values: No.='10006'",
            "BC-VALIDATION",
        ),
        # A table we do not know: the generic code with BC's words, never a guess.
        (
            "Internal_InvalidTableRelation",
            "The field Location Code of table Sales Line contains a value (X) that cannot be "
            "found in the related table (Location).",
            "BC-VALIDATION",
        ),
    ],
)
def test_missing_records_are_read_by_code_and_structure(
    code: str, message: str, expected: str
) -> None:
    err = from_response(400, body(code, message))
    assert catalogue_code(err) == expected


def test_one_fallback_for_unknown_codes() -> None:
    assert info("NO-SUCH-CODE") is UNKNOWN
    assert info(None) is UNKNOWN
    assert info("BC-VALIDATION") is CATALOGUE["BC-VALIDATION"]
    assert UNKNOWN.title == "Unknown error code."
    assert "logs" in UNKNOWN.fix


def test_a_plain_bc_error_is_generic_validation() -> None:
    assert catalogue_code(BcError("x")) == "BC-VALIDATION"
