"""The integration configuration model: what a Moment admin can save, and what they are told."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from tests.support.factories import dialog
from worker.config.model import (
    ConfigValidationError,
    FieldError,
    IntegrationConfig,
    decode_company_name,
    field_errors,
    is_valid_email,
    parse_config,
    parse_connection_fields,
)
from worker.config.settings import Settings

SECRET = "Qx8~k3.secret-VALUE_that-must-not-leak"


def body(**changes: Any) -> dict[str, Any]:
    """The help page's full dialog, every data object switched on (DESIGN §11)."""
    return dialog(
        **{
            "tenant_id": "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f",
            "client_secret": SECRET,
            "environment": "Production",
            **changes,
        }
    )


def minimal(**changes: Any) -> dict[str, Any]:
    """Credentials only, every data object off."""
    data: dict[str, Any] = {
        "tenant_id": "contoso.onmicrosoft.com",
        "client_secret": SECRET,
        "environment": "Sandbox",
        "company_name": "CRONUS AB",
    }
    data.update(changes)
    return data


def errors_of(data: Any) -> list[FieldError]:
    with pytest.raises(ConfigValidationError) as caught:
        parse_config(data)
    return caught.value.errors


def by_field(errors: list[FieldError]) -> dict[str, FieldError]:
    return {e["field"]: e for e in errors}


# --- the full dialog ---------------------------------------------------------------------------


def test_the_help_page_dialog_is_accepted_and_normalised() -> None:
    cfg = parse_config(
        body(
            tenant_id="7C2D9A4E-1B3F-4C5D-8E6F-0A1B2C3D4E5F",
            project_dimension=" projekt ",
            customer_posting_groups={
                "domestic": {
                    "gen_bus_posting_group": "inrikes",
                    "customer_posting_group": "kunder",
                },
                "abroad": {
                    "gen_bus_posting_group": "export",
                    "customer_posting_group": "kunder-exp",
                },
            },
        )
    )
    assert cfg.tenant_id == "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f"
    assert cfg.company_name == "CRONUS Sverige AB"
    assert cfg.project_dimension == "PROJEKT"
    assert cfg.customer_posting_groups.domestic.gen_bus_posting_group == "INRIKES"
    assert cfg.customer_posting_groups.abroad.customer_posting_group == "KUNDER-EXP"
    assert cfg.expenses_from_date == date(2026, 1, 1)
    assert cfg.expense_activity == "Inköp"
    assert cfg.client_secret is not None
    assert cfg.client_secret.get_secret_value() == SECRET
    assert cfg.recipient_user_ids == ["u-17"]
    assert cfg.recipient_emails == ["ekonomi@example.se"]


def test_credentials_alone_are_enough_when_every_data_object_is_off() -> None:
    cfg = parse_config(minimal())
    assert not (cfg.export_customers or cfg.export_projects or cfg.export_invoices)
    assert not cfg.import_expenses
    assert cfg.notification_recipients == ()


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("tenant_id", "Tenant ID is required."),
        ("environment", "Environment is required."),
        ("company_name", "Company name is required."),
    ],
)
@pytest.mark.parametrize("how", ["missing", "blank"])
def test_the_connection_fields_are_required(field: str, message: str, how: str) -> None:
    data = minimal()
    if how == "missing":
        del data[field]
    else:
        data[field] = "   "
    assert by_field(errors_of(data))[field] == {
        "field": field,
        "code": "required",
        "message": message,
    }


# --- conditional rules ------------------------------------------------------------------------

POSTING_GROUP_FIELDS = {
    "customer_posting_groups.domestic.gen_bus_posting_group": (
        "Gen. business posting group for domestic invoice addresses is required when Export "
        "customers is on."
    ),
    "customer_posting_groups.domestic.customer_posting_group": (
        "Customer posting group for domestic invoice addresses is required when Export "
        "customers is on."
    ),
    "customer_posting_groups.abroad.gen_bus_posting_group": (
        "Gen. business posting group for abroad invoice addresses is required when Export "
        "customers is on."
    ),
    "customer_posting_groups.abroad.customer_posting_group": (
        "Customer posting group for abroad invoice addresses is required when Export customers "
        "is on."
    ),
}


def without(data: dict[str, Any], path: str) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    *parents, leaf = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    del target[leaf]
    return data


@pytest.mark.parametrize(("path", "message"), POSTING_GROUP_FIELDS.items())
def test_each_posting_group_is_required_when_exporting_customers(path: str, message: str) -> None:
    errors = errors_of(without(body(), path))
    assert errors == [{"field": path, "code": "required", "message": message}]


def test_all_four_posting_groups_are_reported_at_once() -> None:
    errors = errors_of(body(customer_posting_groups=None))
    assert [e["field"] for e in errors] == list(POSTING_GROUP_FIELDS)
    assert [e["message"] for e in errors] == list(POSTING_GROUP_FIELDS.values())


@pytest.mark.parametrize(
    ("toggle", "field", "message"),
    [
        (
            "export_projects",
            "project_dimension",
            "Project dimension is required when Export projects is on.",
        ),
        (
            "export_invoices",
            "department_dimension",
            "Department dimension is required when Export invoices is on.",
        ),
        (
            "export_invoices",
            "department_source",
            "Department source is required when Export invoices is on: choose whether "
            "departments come from Moment's department object or from a project tag group.",
        ),
        (
            "import_expenses",
            "expenses_from_date",
            "From date is required when Import expenses is on.",
        ),
        (
            "import_expenses",
            "expense_activity",
            "Expense activity is required when Import expenses is on.",
        ),
        (
            "import_expenses",
            "expenses_billable",
            "Imported expenses will be set as billable is required when Import expenses is on: "
            "choose yes or no.",
        ),
    ],
)
@pytest.mark.parametrize("how", ["missing", "null", "blank"])
def test_fields_required_by_a_toggle(toggle: str, field: str, message: str, how: str) -> None:
    data = body()
    if how == "missing":
        del data[field]
    else:
        data[field] = None if how == "null" or field == "expenses_billable" else "  "
    assert errors_of(data) == [{"field": field, "code": "required", "message": message}]
    # The same field may stay empty while its data object is switched off.
    data[toggle] = False
    if field == "project_dimension":
        data["import_expenses"] = False  # expense import needs it too (next test)
    parse_config(data)


def test_expense_import_needs_the_project_dimension_even_without_project_export() -> None:
    data = body(export_projects=False, project_dimension=None)
    assert errors_of(data) == [
        {
            "field": "project_dimension",
            "code": "required",
            "message": "Project dimension is required when Import expenses is on.",
        }
    ]


def test_expenses_billable_false_is_a_valid_choice() -> None:
    assert parse_config(body(expenses_billable=False)).expenses_billable is False


def test_a_project_tag_group_is_required_when_departments_come_from_tag_groups() -> None:
    errors = errors_of(body(department_source="tag_group"))
    assert errors == [
        {
            "field": "department_tag_group",
            "code": "required",
            "message": "Project tag group for departments is required when departments come "
            "from a project tag group: write the name of the tag group as it is in Moment.",
        }
    ]
    cfg = parse_config(body(department_source="tag_group", department_tag_group=" Avdelning "))
    assert cfg.department_tag_group == "Avdelning"


def test_department_source_accepts_only_the_two_choices() -> None:
    error = by_field(errors_of(body(department_source="tags")))["department_source"]
    assert error["code"] == "invalid"
    assert "'department'" in error["message"]
    assert "'tag_group'" in error["message"]


def test_the_department_dimension_must_differ_from_the_project_dimension() -> None:
    errors = errors_of(body(department_dimension="projekt"))
    assert errors == [
        {
            "field": "department_dimension",
            "code": "conflict",
            "message": "Department dimension must differ from Project dimension: an invoice line "
            "carries both, each with its own value.",
        }
    ]


def test_malformed_fields_and_missing_required_fields_are_reported_together() -> None:
    data = body(environment="Prod uction", export_projects=True)
    del data["project_dimension"]
    del data["expense_activity"]
    fields = {e["field"]: e["code"] for e in errors_of(data)}
    assert fields == {
        "environment": "invalid",
        "project_dimension": "required",
        "expense_activity": "required",
    }


def test_an_unknown_field_is_named() -> None:
    assert errors_of(minimal(export_vendors=True)) == [
        {
            "field": "export_vendors",
            "code": "unknown",
            "message": "'export_vendors' is not a setting of the Business Central integration; "
            "remove it.",
        }
    ]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"export_customers": "maybe"}, "export_customers", "Export customers must be on or off"),
        ({"expenses_from_date": "2026-13-01"}, "expenses_from_date", "From date must be a date"),
        ({"expenses_from_date": "01/02/2026"}, "expenses_from_date", "From date must be a date"),
        ({"expenses_from_date": 1700000000}, "expenses_from_date", "From date must be a date"),
        ({"notes": 5}, "notes", "Notes must be text."),
        ({"customer_posting_groups": "KUNDER"}, "customer_posting_groups", "Posting groups must"),
        ({"notification_recipients": "u-17"}, "notification_recipients", "Notification recip"),
    ],
)
def test_wrongly_typed_values_get_a_plain_message(
    changes: dict[str, Any], field: str, message: str
) -> None:
    error = by_field(errors_of(body(**changes)))[field]
    assert error["code"] == "invalid"
    assert error["message"].startswith(message)


def test_a_body_that_is_not_an_object_is_rejected_plainly() -> None:
    errors = errors_of(["not", "an", "object"])
    assert errors[0]["code"] == "invalid"
    assert errors[0]["message"].startswith("The configuration")


def test_field_errors_translates_a_raw_pydantic_error() -> None:
    with pytest.raises(ValidationError) as caught:
        IntegrationConfig.model_validate(body(expense_activity=None, environment="a/b"))
    # Direct validation stops at field errors; the rules are checked once they pass.
    assert [(e["field"], e["code"]) for e in field_errors(caught.value)] == [
        ("environment", "invalid")
    ]
    with pytest.raises(ValidationError) as caught:
        IntegrationConfig.model_validate(body(expense_activity=None))
    assert [(e["field"], e["code"]) for e in field_errors(caught.value)] == [
        ("expense_activity", "required")
    ]


def test_configuration_error_text_lists_the_messages() -> None:
    with pytest.raises(ConfigValidationError, match="Tenant ID is required"):
        parse_config(minimal(tenant_id=""))


# --- lengths and BC codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("project_dimension", 20),
        ("department_dimension", 20),
        ("expense_activity", 50),
        ("department_tag_group", 100),
        ("notes", 2000),
    ],
)
def test_length_limits(field: str, limit: int) -> None:
    parse_config(body(**{field: "A" * limit}))
    error = by_field(errors_of(body(**{field: "A" * (limit + 1)})))[field]
    assert error["code"] == "too_long"
    assert f"at most {limit} characters" in error["message"]


def test_posting_group_codes_are_limited_to_twenty_characters() -> None:
    data = body()
    data["customer_posting_groups"]["abroad"]["customer_posting_group"] = "K" * 21
    assert errors_of(data) == [
        {
            "field": "customer_posting_groups.abroad.customer_posting_group",
            "code": "too_long",
            "message": "Customer posting group for abroad invoice addresses can be at most 20 "
            "characters (a Business Central code).",
        }
    ]


def test_codes_are_uppercased_like_business_central_does() -> None:
    cfg = parse_config(body(project_dimension=" straße ", department_dimension="avd-ö"))
    # BC uppercases character by character, so "ß" stays one character.
    assert cfg.project_dimension == "STRAßE"
    assert cfg.department_dimension == "AVD-Ö"


def test_free_text_keeps_its_case_and_line_breaks() -> None:
    cfg = parse_config(body(expense_activity="  Inköp material ", notes="line 1\nline 2\n"))
    assert cfg.expense_activity == "Inköp material"
    assert cfg.notes == "line 1\nline 2"


@pytest.mark.parametrize("field", ["project_dimension", "expense_activity", "company_name"])
def test_one_line_fields_reject_control_characters(field: str) -> None:
    error = by_field(errors_of(body(**{field: "A\nB"})))[field]
    assert error["code"] == "invalid"
    assert "control characters" in error["message"]


def test_notes_reject_nul_characters() -> None:
    assert by_field(errors_of(body(notes="a\x00b")))["notes"]["code"] == "invalid"


# --- company name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("CRONUS%20Sverige%20AB", "CRONUS Sverige AB"),
        ("A%2FB", "A/B"),
        ("100% Consulting", "100% Consulting"),
        ("%E2%82%AC", "€"),
        ("O''Brien", "O''Brien"),
        ("Ö", "Ö"),
        ("Smith & Co", "Smith & Co"),
        ("A+B", "A+B"),
        ("100%25", "100%"),
        ("%25E2", "%E2"),
        ("Bad%FFbyte", "Bad%FFbyte"),
        ("%E2%82", "%E2%82"),
        ("  Trimmed AB ", "Trimmed AB"),
        ("%20Padded%20", "Padded"),
    ],
)
def test_company_name_is_percent_decoded_once(typed: str, stored: str) -> None:
    assert parse_config(minimal(company_name=typed)).company_name == stored


def test_company_name_is_limited_to_business_centrals_thirty_characters() -> None:
    assert len(parse_config(minimal(company_name="C" * 30)).company_name) == 30
    # The limit applies to the decoded name: 30 characters written as 90.
    assert parse_config(minimal(company_name="%C3%96" * 30)).company_name == "Ö" * 30
    error = by_field(errors_of(minimal(company_name="C" * 31)))["company_name"]
    assert error["code"] == "too_long"
    assert "30 characters" in error["message"]


def test_an_encoded_line_break_in_the_company_name_is_rejected() -> None:
    assert by_field(errors_of(minimal(company_name="A%0AB")))["company_name"]["code"] == "invalid"


def test_a_stored_company_name_is_not_decoded_again() -> None:
    cfg = parse_config(minimal(company_name="X%2541"))
    assert cfg.company_name == "X%41"
    again = IntegrationConfig.from_stored(cfg.to_storage_dict(), SECRET)
    assert again.company_name == "X%41"
    assert again == cfg


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda s: s == s.strip() and s.strip() != "")


@given(names)
@example("100% Consulting")
@example("CRONUS Sverige AB")
def test_a_fully_encoded_company_name_decodes_to_what_bc_shows(name: str) -> None:
    assert decode_company_name(quote(name, safe="")) == name
    assert parse_config(minimal(company_name=quote(name, safe=""))).company_name == name


# --- tenant, environment, client id -------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f", "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f"),
        ("7C2D9A4E-1B3F-4C5D-8E6F-0A1B2C3D4E5F", "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f"),
        ("{7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f}", "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f"),
        (" contoso.onmicrosoft.com ", "contoso.onmicrosoft.com"),
        ("Contoso.OnMicrosoft.com", "contoso.onmicrosoft.com"),
        ("bolag-1.se", "bolag-1.se"),
        ("xn--fretag-wxa.se", "xn--fretag-wxa.se"),
    ],
)
def test_tenant_id_is_a_guid_or_a_domain(typed: str, stored: str) -> None:
    assert parse_config(minimal(tenant_id=typed)).tenant_id == stored


@pytest.mark.parametrize(
    "typed",
    [
        "contoso",  # one label: no domain
        "common",
        "organizations",
        "00000000-0000-0000-0000-000000000000",
        "7c2d9a4e1b3f4c5d8e6f0a1b2c3d4e5f",
        "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5",
        "10.0.0.1",
        "contoso.com.",
        "-contoso.com",
        "contoso-.com",
        "con_toso.com",
        "contoso..com",
        "contoso.com/evil",
        "evil.com#.contoso.com",
        "user@contoso.com",
        "contoso.com:443",
        "contoso.com?x",
        "contoso.com\\x",
        "contoso .com",
        "företag.se",
        "a" * 64 + ".com",
        ".".join(["a" * 60] * 5) + ".com",
    ],
)
def test_tenant_id_rejects_anything_else(typed: str) -> None:
    error = by_field(errors_of(minimal(tenant_id=typed)))["tenant_id"]
    assert error["code"] == "invalid"
    assert error["message"].startswith("Tenant ID must be the directory (tenant) ID")


@pytest.mark.parametrize("typed", ["Production", "Sandbox", "UAT-2", "dev_3", "x" * 30])
def test_environment_names(typed: str) -> None:
    assert parse_config(minimal(environment=typed)).environment == typed


@pytest.mark.parametrize(
    "typed", ["Prod uction", "Prod/uction", "..", "Prod%2F", "Prodüction", "a:b", "Prod?x=1"]
)
def test_environment_rejects_url_characters(typed: str) -> None:
    assert errors_of(minimal(environment=typed)) == [
        {
            "field": "environment",
            "code": "invalid",
            "message": "Environment can only contain letters a-z, digits, '-' and '_', for "
            "example Production or Sandbox.",
        }
    ]


def test_environment_too_long() -> None:
    assert by_field(errors_of(minimal(environment="x" * 31)))["environment"]["code"] == "too_long"


def test_client_id_is_an_optional_guid() -> None:
    cfg = parse_config(minimal(client_id="A1B2C3D4-0000-4000-8000-000000000001"))
    assert cfg.client_id == "a1b2c3d4-0000-4000-8000-000000000001"
    assert parse_config(minimal(client_id="")).client_id is None
    error = by_field(errors_of(minimal(client_id="my-app")))["client_id"]
    assert error["code"] == "invalid"
    assert "application (client) ID" in error["message"]


FORBIDDEN_IN_URL = set("/?#@%\\:")
# Characters that would change a URL's host or path, and look-alikes that lowercase to ASCII.
NOISE = [*"/?#@%\\:. {}\t\n\r", "\u212a", "\u0130", "ö", "\x00", "%2F", "..", "%2e%2e"]


def near(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid-looking values, some with one character sequence from NOISE spliced in."""
    return st.one_of(
        valid,
        st.tuples(valid, st.sampled_from(NOISE), st.integers(0, 40)).map(
            lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
        ),
        st.text(max_size=60),
    )


labels = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,8}[A-Za-z0-9]?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=3).map(lambda parts: ".".join([*parts, "com"]))
guids = st.uuids().map(str).flatmap(lambda g: st.sampled_from([g, g.upper(), "{" + g + "}"]))


def accepted(data: dict[str, Any], field: str) -> str | None:
    try:
        value = getattr(parse_config(data), field)
    except ConfigValidationError:
        return None
    assert isinstance(value, str) or value is None
    return value


def url_safe(value: str) -> bool:
    return (
        value.isascii()
        and value.isprintable()
        and not (set(value) & FORBIDDEN_IN_URL)
        and not any(ch.isspace() for ch in value)
        and value not in (".", "..")
    )


@settings(max_examples=400)
@given(near(st.one_of(domains, guids)))
@example("contoso.onmicrosoft.com/../evil")
@example("evil.com\\@contoso.com")
@example("contoso.\u212aom")
def test_no_accepted_tenant_id_can_change_a_url(typed: str) -> None:
    value = accepted(minimal(tenant_id=typed), "tenant_id")
    if value is not None:
        assert url_safe(value), value
        assert value == value.lower()


@settings(max_examples=300)
@given(near(st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True)))
@example("Production/../../other-tenant")
@example("..")
def test_no_accepted_environment_can_change_a_url(typed: str) -> None:
    value = accepted(minimal(environment=typed), "environment")
    if value is not None:
        assert url_safe(value), value


@settings(max_examples=200)
@given(near(guids))
def test_no_accepted_client_id_can_change_a_url(typed: str) -> None:
    value = accepted(minimal(client_id=typed), "client_id")
    if value is not None:
        assert url_safe(value), value


def test_the_url_safety_properties_accept_real_values() -> None:
    # Guard against the properties above passing only because everything is rejected.
    assert accepted(minimal(tenant_id="a-1.b.com"), "tenant_id") == "a-1.b.com"
    assert accepted(minimal(environment="Prod_2-x"), "environment") == "Prod_2-x"


# --- recipients -------------------------------------------------------------------------------


def test_recipients_are_deduplicated_keeping_the_first_and_the_order() -> None:
    cfg = parse_config(
        minimal(
            notification_recipients=[
                {"email": "Ekonomi@Example.se"},
                {"user_id": "u-17"},
                {"email": "ekonomi@EXAMPLE.SE"},
                {"user_id": "u-18"},
                {"user_id": "u-17"},
                {"email": "anna@example.se"},
                {"email": "EKONOMI@example.se"},
            ]
        )
    )
    assert cfg.recipient_emails == ["Ekonomi@example.se", "anna@example.se"]
    assert cfg.recipient_user_ids == ["u-17", "u-18"]
    assert cfg.to_public_dict()["notification_recipients"] == [
        {"email": "Ekonomi@example.se"},
        {"user_id": "u-17"},
        {"user_id": "u-18"},
        {"email": "anna@example.se"},
    ]


def test_user_ids_are_case_sensitive() -> None:
    cfg = parse_config(minimal(notification_recipients=[{"user_id": "U-1"}, {"user_id": "u-1"}]))
    assert cfg.recipient_user_ids == ["U-1", "u-1"]


def test_plain_strings_are_a_shorthand_for_recipients() -> None:
    cfg = parse_config(minimal(notification_recipients=["u-17", " anna@example.se "]))
    assert cfg.recipient_user_ids == ["u-17"]
    assert cfg.recipient_emails == ["anna@example.se"]


@pytest.mark.parametrize(
    "address",
    [
        "ekonomi@example.se",
        "first.last+bc@sub.example.co.uk",
        "o'brien@example.ie",
        "x@example.museum",
        "ekonomi@företag.se",
        "a_b-c@xn--fretag-wxa.se",
    ],
)
def test_valid_email_addresses(address: str) -> None:
    assert is_valid_email(address)
    cfg = parse_config(minimal(notification_recipients=[{"email": address}]))
    assert cfg.recipient_emails == [address]


@pytest.mark.parametrize(
    "address",
    [
        "ekonomi",
        "ekonomi@",
        "@example.se",
        "ekonomi@example",
        "ekonomi@@example.se",
        "eko nomi@example.se",
        "ekonomi@exam ple.se",
        ".ekonomi@example.se",
        "eko..nomi@example.se",
        "ekonomi.@example.se",
        "ekonomi@-example.se",
        "ekonomi@example..se",
        "ekonomi@example.se.",
        "ekonomi@10.0.0.1",
        "ekonomi@example.s3",
        "åsa@example.se",
        "a" * 65 + "@example.se",
        "Ekonomi <ekonomi@example.se>",
        "ekonomi@example.se,anna@example.se",
    ],
)
def test_invalid_email_addresses(address: str) -> None:
    assert not is_valid_email(address)
    errors = errors_of(minimal(notification_recipients=[{"user_id": "u-1"}, {"email": address}]))
    assert errors == [
        {
            "field": "notification_recipients.1.email",
            "code": "invalid",
            "message": f"Notification recipient 2: '{address.strip()}' is not a valid e-mail "
            "address; write it like ekonomi@example.se.",
        }
    ]


@pytest.mark.parametrize(
    ("recipient", "message"),
    [
        (
            {"user_id": "u-1", "email": "a@example.se"},
            "must be either a Moment user or an e-mail address, not both.",
        ),
        ({}, "must be either a Moment user or an e-mail address."),
        ({"user_id": " "}, "must be either a Moment user or an e-mail address."),
    ],
)
def test_a_recipient_is_a_user_or_an_address(recipient: dict[str, str], message: str) -> None:
    assert errors_of(minimal(notification_recipients=[recipient])) == [
        {
            "field": "notification_recipients.0",
            "code": "invalid",
            "message": f"Notification recipient 1 {message}",
        }
    ]


def test_a_user_id_with_spaces_is_rejected() -> None:
    errors = errors_of(minimal(notification_recipients=[{"user_id": "Anna Berg"}]))
    assert errors == [
        {
            "field": "notification_recipients.0.user_id",
            "code": "invalid",
            "message": "Notification recipient 1: 'Anna Berg' is not the id of a Moment user.",
        }
    ]


def test_at_most_a_hundred_recipients() -> None:
    many = [{"user_id": f"u-{i}"} for i in range(101)]
    error = by_field(errors_of(minimal(notification_recipients=many)))["notification_recipients"]
    assert error["code"] == "too_long"
    assert "at most 100" in error["message"]


# --- the secret ---------------------------------------------------------------------------------


def test_the_public_view_never_holds_the_secret() -> None:
    cfg = parse_config(body())
    public = cfg.to_public_dict()
    assert "client_secret" not in public
    assert public["client_secret_set"] is True
    assert list(public)[:4] == ["tenant_id", "client_id", "client_secret_set", "environment"]
    assert SECRET not in json.dumps(public)
    assert cfg.public_view() == public
    assert SECRET not in repr(cfg)
    assert SECRET not in str(cfg)
    assert SECRET not in json.dumps(cfg.to_storage_dict())


def test_an_update_may_leave_the_secret_blank() -> None:
    for blank in (None, "", "   "):
        cfg = parse_config(body(client_secret=blank))
        assert cfg.client_secret is None
        assert cfg.to_public_dict()["client_secret_set"] is False


def test_the_secret_is_trimmed_and_kept_as_a_secret() -> None:
    cfg = parse_config(body(client_secret=f"  {SECRET}\n"))
    assert isinstance(cfg.client_secret, SecretStr)
    assert cfg.client_secret.get_secret_value() == SECRET
    assert cfg.with_secret("other").client_secret == SecretStr("other")


@pytest.mark.parametrize("bad", [SECRET + "x" * 600, SECRET + "\x00", 12345])
def test_errors_about_the_secret_never_quote_it(bad: object) -> None:
    with pytest.raises(ValidationError) as caught:
        IntegrationConfig.model_validate(body(client_secret=bad))
    assert SECRET not in str(caught.value)
    assert "12345" not in str(caught.value)
    errors = errors_of(body(client_secret=bad))
    assert [e["field"] for e in errors] == ["client_secret"]
    assert SECRET not in json.dumps(errors)
    assert errors[0]["message"].startswith("Client Secret ")


# --- helpers ----------------------------------------------------------------------------------


def test_effective_client_id_prefers_the_configs_own() -> None:
    own = "a1b2c3d4-0000-4000-8000-000000000001"
    default = "b1b2c3d4-0000-4000-8000-000000000002"
    installation = Settings(client_id=default)
    assert parse_config(minimal(client_id=own)).effective_client_id(installation) == own
    assert parse_config(minimal()).effective_client_id(installation) == default


def test_effective_client_id_without_any_is_a_field_error() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        parse_config(minimal()).effective_client_id(Settings(client_id=None))
    assert caught.value.errors[0]["field"] == "client_id"
    assert caught.value.errors[0]["code"] == "required"


def test_a_stored_config_from_a_newer_release_still_loads() -> None:
    stored = parse_config(body()).to_storage_dict()
    stored["export_vendors"] = True
    stored["customer_posting_groups"]["domestic"]["vat_bus_posting_group"] = "INRIKES"
    cfg = IntegrationConfig.from_stored(stored, SECRET)
    assert cfg.customer_posting_groups.domestic.gen_bus_posting_group == "INRIKES"


def test_the_storage_form_round_trips() -> None:
    cfg = parse_config(body(department_source="tag_group", department_tag_group="Avdelning"))
    stored = json.loads(json.dumps(cfg.to_storage_dict()))
    assert IntegrationConfig.from_stored(stored, SECRET) == cfg


# --- the options call's connection fields ------------------------------------------------------


def test_connection_fields_take_the_whole_dialog_and_keep_what_connects() -> None:
    fields = parse_connection_fields(body(tenant_id="Contoso.OnMicrosoft.com"))
    assert fields.tenant_id == "contoso.onmicrosoft.com"
    assert fields.company_name == "CRONUS Sverige AB"
    assert fields.client_secret is not None
    assert fields.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(fields)


def test_connection_fields_need_no_company_and_no_secret() -> None:
    fields = parse_connection_fields(
        {"tenant_id": "contoso.onmicrosoft.com", "environment": "Sandbox", "company_name": " "}
    )
    assert (fields.company_name, fields.client_secret) == (None, None)
    assert fields.effective_client_id(
        Settings(client_id="A" * 8 + "-1111-2222-3333-" + "4" * 12)
    ) == ("a" * 8 + "-1111-2222-3333-" + "4" * 12)


def test_connection_fields_report_field_errors_without_the_secret() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        parse_connection_fields(
            {
                "tenant_id": "x/../evil",
                "environment": "Prod/uction",
                "client_secret": SECRET + "\x00x",
            }
        )
    fields = [e["field"] for e in caught.value.errors]
    assert fields == ["tenant_id", "client_secret", "environment"]
    assert SECRET not in json.dumps(caught.value.errors)
