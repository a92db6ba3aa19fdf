"""BC and Entra error answers become typed errors a caller can act on."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from worker.bc import BcCredentials
from worker.bc.auth import entra_error
from worker.bc.errors import (
    BcAuthError,
    BcCompanyNotFound,
    BcConflict,
    BcEnvironmentNotFound,
    BcError,
    BcNotFound,
    BcPermissionDenied,
    BcServiceNotPublished,
    BcThrottled,
    BcUnavailable,
    BcValidationError,
    Label,
    correlation_id,
    facts,
    from_response,
    is_dialog,
    names_field,
)

CORR = "5f2a1c3e-9b8d-4e7f-a6b5-c4d3e2f1a0b9"


def body(code: str, message: str) -> bytes:
    return json.dumps(
        {"error": {"code": code, "message": f"{message}  CorrelationId:  {CORR}."}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "Application_DialogException", BcValidationError),
        (400, "BadRequest_InvalidToken", BcValidationError),
        (401, "Authentication_InvalidCredentials", BcAuthError),
        (403, "Authorization_Forbidden", BcPermissionDenied),
        (404, "NoEnvironment", BcEnvironmentNotFound),
        (404, "BadRequest_ResourceNotFound", BcNotFound),
        (404, "Internal_CompanyNotFound", BcCompanyNotFound),
        (409, "Request_EntityChanged", BcConflict),
        (409, "Internal_EntityWithSameKeyExists", BcConflict),
        (400, "Internal_EntityWithSameKeyExists", BcConflict),
        (429, "TooManyRequests", BcThrottled),
        (408, "RequestTimeout", BcUnavailable),
        (500, "Internal_ServerError", BcUnavailable),
        (503, "Internal_TenantUnavailable", BcUnavailable),
    ],
)
def test_status_and_code_map_to_a_class(status: int, code: str, cls: type[BcError]) -> None:
    err = from_response(status, body(code, "Something happened."))
    assert type(err) is cls
    assert err.status == status
    assert err.code == code
    assert err.correlation_id == CORR
    assert "Something happened." in err.message


def test_transient_and_permanent_classes() -> None:
    assert BcThrottled("x").transient and BcUnavailable("x").transient
    assert BcConflict("x").transient and BcAuthError("x").transient
    for cls in (BcValidationError, BcNotFound):
        assert not cls("x").transient
    assert not BcServiceNotPublished("CustomerCard", "Customer Card (page 21)").transient
    # Retrying the same request is useless for these, even though they are transient later.
    assert not BcConflict("x").retryable and not BcAuthError("x").retryable
    assert BcThrottled("x").retryable and BcUnavailable("x").retryable


def test_retry_after_is_carried() -> None:
    err = from_response(429, b"", retry_after=7.0)
    assert isinstance(err, BcThrottled) and err.retry_after == 7.0
    assert "429" in err.message
    err = from_response(503, b"<html>busy</html>", retry_after=3.0)
    assert isinstance(err, BcUnavailable) and err.retry_after == 3.0


def test_xml_and_plain_bodies() -> None:
    xml = (
        b'<error xmlns="http://docs.oasis-open.org/odata/ns/metadata"><code>Unauthorized</code>'
        b"<message>The credentials provided are incorrect</message></error>"
    )
    err = from_response(401, xml)
    assert isinstance(err, BcAuthError)
    assert err.code == "Unauthorized"
    assert "The credentials provided are incorrect" in err.message
    assert err.field == "client_id"
    assert from_response(502, b"Bad gateway").message == "Bad gateway"


def test_correlation_id_parsing() -> None:
    assert correlation_id(f"Boom.  CorrelationId:  {CORR.upper()}.") == CORR
    assert correlation_id("no id here") is None
    assert correlation_id(None) is None


def test_service_not_published_tells_what_to_publish() -> None:
    err = BcServiceNotPublished("CustomerCard", "Customer Card (page 21)", status=404)
    assert "Customer Card (page 21)" in str(err) and "'CustomerCard'" in str(err)


def test_company_not_found_lists_names() -> None:
    err = BcCompanyNotFound("CRONUS", ("CRONUS Sverige AB", "My Company"))
    assert err.field == "company_name"
    assert "'CRONUS Sverige AB'" in err.message and "'My Company'" in err.message


@pytest.mark.parametrize(
    ("codes", "field"),
    [
        ([7000215], "client_secret"),
        ([7000222], "client_secret"),
        ([90002], "tenant_id"),
        ([900023], "tenant_id"),
        ([700016], "client_id"),
    ],
)
def test_entra_errors_name_the_field(codes: list[int], field: str) -> None:
    result = {
        "error": "invalid_client" if field == "client_secret" else "invalid_request",
        "error_codes": codes,
        "error_description": f"AADSTS{codes[0]}: details. Trace ID: x",
        "correlation_id": CORR,
    }
    err = entra_error(result)
    assert isinstance(err, BcAuthError)
    assert err.field == field
    assert err.code == f"AADSTS{codes[0]}"
    assert err.correlation_id == CORR


def test_entra_code_only_in_description() -> None:
    err = entra_error({"error": "unauthorized_client", "error_description": "AADSTS700016: nope"})
    assert err.field == "client_id"


def test_entra_server_trouble_is_unavailable() -> None:
    assert isinstance(entra_error({"error": "temporarily_unavailable"}), BcUnavailable)


def test_secret_never_in_credentials_repr() -> None:
    creds = BcCredentials.from_config(
        tenant_id=" 7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e ",
        client_id="3f1b6c2e-8d4a-4e9b-a7c5-1d2e3f4a5b6c",
        client_secret="super-secret-value",
        environment="Production",
        company_name="CRONUS%20Sverige%20AB",
    )
    assert "super-secret-value" not in repr(creds) and "super-secret-value" not in str(creds)
    assert isinstance(creds.client_secret, SecretStr)
    assert creds.company_name == "CRONUS Sverige AB"
    assert creds.tenant_id == "7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e"


# --- recognising one error: code and structure first ------------------------------------------


def error(code: str | None, message: str, status: int = 400) -> BcError:
    return from_response(status, body(code, message) if code else {"error": {"message": message}})


def test_facts_of_a_test_field_name_field_table_and_key() -> None:
    found = facts(
        error(
            "Application_FieldValidationException",
            "Gen. Bus. Posting Group must have a value in Customer: No.=K10001. It cannot be "
            "zero or empty.",
        )
    )
    assert (found.field, found.table, found.keys) == (
        "Gen. Bus. Posting Group",
        "Customer",
        (("No.", "K10001"),),
    )
    assert not found.missing_record


def test_facts_of_a_table_relation_and_a_missing_record() -> None:
    relation = facts(
        error(
            "Internal_InvalidTableRelation",
            "The field Customer Posting Group of table Customer contains a value (KUNDER-X) that "
            "cannot be found in the related table (Customer Posting Group).",
        )
    )
    assert relation.missing_record
    assert (relation.field, relation.table, relation.value, relation.related_table) == (
        "Customer Posting Group",
        "Customer",
        "KUNDER-X",
        "Customer Posting Group",
    )
    missing = facts(
        error(
            "Internal_RecordNotFound",
            "The Dimension Value does not exist. Identification fields and values: "
            "Dimension Code='PROJEKT',Code='O''NEIL'",
            404,
        )
    )
    assert missing.related_table == "Dimension Value" and missing.value == "O'NEIL"
    assert missing.keys == (("Dimension Code", "PROJEKT"), ("Code", "O'NEIL"))


def test_the_code_decides_which_structure_is_read() -> None:
    text = "Customer Posting Group must have a value in Customer: No.=C1."
    assert names_field(
        error("Application_FieldValidationException", text), "customer posting group"
    )
    # The same words under another code are not a TestField (e.g. a dialog quoting one).
    assert not names_field(error("Application_DialogException", text), "Customer Posting Group")
    assert names_field(
        error("Application_FieldValidationException", text),
        "Customer Posting Group",
        table="Customer",
    )
    assert not names_field(
        error("Application_FieldValidationException", text), "Customer Posting Group", table="Item"
    )


def test_a_field_error_names_its_field_before_the_value() -> None:
    err = error(
        "Application_FieldValidationException",
        "Phone No. +46 8 123 ext. 12 must not contain letters in Customer No.='10000'.",
    )
    assert names_field(err, "Phone No.")
    assert not names_field(err, "Mobile Phone No.")


def test_dialogs_are_told_by_their_label_under_their_code() -> None:
    sell_to = error("Application_DialogException", "The sell-to customer cannot be found.")
    assert is_dialog(sell_to, Label.SELL_TO_CUSTOMER_NOT_FOUND, Label.BILL_TO_CUSTOMER_NOT_FOUND)
    assert not is_dialog(sell_to, Label.ACCOUNT_DOES_NOT_EXIST)
    other_code = error("Internal_RecordNotFound", "The sell-to customer cannot be found.")
    assert not is_dialog(other_code, Label.SELL_TO_CUSTOMER_NOT_FOUND)
    # A translated text is not mistaken for anything (the client asks for English instead).
    swedish = error("Application_DialogException", "Kontot finns inte.")
    assert not is_dialog(swedish, Label.ACCOUNT_DOES_NOT_EXIST)
    vat = error(
        "Application_DialogException",
        "The entered VAT Registration number for Customer 10000 is not in agreement with the "
        "format specified for Country/Region Code SE.",
    )
    assert is_dialog(vat, Label.VAT_REGISTRATION_FORMAT)


def test_kind_is_bcs_own_classification() -> None:
    assert from_response(401, body("Authentication_InvalidCredentials", "x")).kind == "auth"
    assert from_response(429, body("TooManyRequests", "x")).kind == "transient"
    assert from_response(400, body("BadRequest", "x")).kind == "permanent"
