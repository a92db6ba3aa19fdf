"""Pure transforms: Moment snapshots → BC payloads, exactly as bc-contract.md says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import factories as f
from worker.bc import BcValidationError
from worker.errors import Permanent
from worker.events.models import Customer, Invoice, Project
from worker.sync import transforms as t
from worker.sync.errors import missing_record

TERMS = (("id-10", "10 DAGAR", "10D"), ("id-30", "30 DAGAR", "<30D>"), ("id-14", "14 DAGAR", "14D"))


def test_customer_payload_has_the_contract_fields() -> None:
    c = Customer.model_validate(f.customer("10006", country="SE"))
    body = t.customer_payload(c, local_currency="SEK", payment_terms="id-30")
    assert body == {
        "number": "10006",
        "displayName": "Kund 10006 AB",
        "addressLine1": "Storgatan 1",
        "addressLine2": "",
        "city": "Stockholm",
        "postalCode": "111 22",
        "country": "SE",
        "email": "billing@acme.se",
        "phoneNumber": "+46 8 123 45",
        "website": "",
        "taxRegistrationNumber": "SE556677889901",
        "currencyCode": "",
        "paymentTermsId": "id-30",
    }


def test_foreign_currency_is_kept_and_local_is_blank() -> None:
    assert t.currency("EUR", "SEK") == "EUR"
    assert t.currency("sek", "SEK") == ""
    assert t.currency(None, "SEK") == ""


def test_a_currency_read_back_is_a_code_whether_bc_shows_lcy_or_blank() -> None:
    """BC shows the local currency as the LCY code (GraphMgtGeneralTools.Codeunit.al); blank
    (a G/L setup without an LCY code) is the local currency too."""
    assert t.currency_read("SEK", "SEK") == "SEK"
    assert t.currency_read("", "SEK") == "SEK"
    assert t.currency_read(None, "sek") == "SEK"
    assert t.currency_read("EUR", "SEK") == "EUR"


def test_the_external_document_number_is_sent_upper_case() -> None:
    """Code[35] in BC: stored upper-cased, so sent and searched so (bc-api Corrections 8)."""
    inv = Invoice.model_validate(f.invoice("ab-12"))
    body = t.invoice_payload(inv, customer_number="10006", local_currency="SEK")
    assert body["externalDocumentNumber"] == "AB-12"


def test_a_vat_code_longer_than_bc_keeps_is_refused_by_the_contract() -> None:
    """BC keeps 20 characters of taxCode (APIV2SalesInvoiceLines.Page.al): longer is invalid."""
    lines = [{**f.invoice()["lines"][0], "vat_code": " " + "V" * 21 + " "}]
    with pytest.raises(ValueError, match=r"VAT code 'V{21}' has 21 characters"):
        Invoice.model_validate(f.invoice(lines=lines))
    lines[0]["vat_code"] = "V" * 20
    assert Invoice.model_validate(f.invoice(lines=lines)).lines[0].vat_code == "V" * 20
    assert t.TAX_CODE_MAX == 20


def test_domestic_vs_abroad_posting_groups() -> None:
    dom, abroad = ("INRIKES", "KUNDER"), ("EXPORT", "KUNDER-EXP")
    se = Customer.model_validate(f.customer(country="SE"))
    no = Customer.model_validate(f.customer(country="NO"))
    assert t.posting_groups(se, "se", dom, abroad) == t.PostingGroupChoice(
        "INRIKES", "KUNDER", True
    )
    assert t.posting_groups(no, "SE", dom, abroad) == t.PostingGroupChoice(
        "EXPORT", "KUNDER-EXP", False
    )


@pytest.mark.parametrize(
    ("days", "expected"), [(30, "id-30"), (10, "id-10"), (45, None), (None, None)]
)
def test_payment_terms_map_by_due_date_formula(days: int | None, expected: str | None) -> None:
    assert t.payment_terms_id(days, TERMS) == expected


def test_long_free_text_is_cut_to_bc_lengths_and_cleaned() -> None:
    c = Customer.model_validate(
        f.customer(
            name="A" * 150,
            invoice_address={"line1": "Gata\r\n1\x00", "city": "S" * 40, "country_code": "se"},
        )
    )
    body = t.customer_payload(c, local_currency="SEK", payment_terms=None)
    assert body["displayName"] == "A" * 100
    assert body["addressLine1"] == "Gata 1"
    assert len(body["city"]) == 30
    assert body["country"] == "SE"
    assert "paymentTermsId" not in body


def test_identifier_too_long_is_a_permanent_error() -> None:
    c = Customer.model_validate(f.customer(number="1" * 21))
    with pytest.raises(Permanent, match="allows 20"):
        t.customer_payload(c, local_currency="SEK", payment_terms=None)
    inv = Invoice.model_validate(f.invoice(number="N" * 36))
    with pytest.raises(Permanent, match="allows 35"):
        t.invoice_payload(inv, customer_number="10006", local_currency="SEK")


@given(st.text(max_size=300))
def test_clean_never_returns_control_characters_or_too_long(text: str) -> None:
    out = t.clean(text, 50)
    assert len(out) <= 50
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in out)


def test_project_dimension_value_name_is_cut_to_50() -> None:
    p = Project.model_validate(f.project("4005", name="Ett mycket långt projektnamn " * 5))
    code, name = t.dimension_value(p)
    assert code == "4005" and len(name) == 50


def test_invoice_payload_and_lines() -> None:
    inv = Invoice.model_validate(f.invoice("1864"))
    body = t.invoice_payload(inv, customer_number="10006", local_currency="SEK")
    assert body["externalDocumentNumber"] == "1864"
    assert body["customerNumber"] == "10006"
    assert (body["invoiceDate"], body["postingDate"], body["dueDate"]) == (
        "2026-11-20",
        "2026-11-20",
        "2026-12-20",
    )
    assert body["currencyCode"] == ""
    assert body["customerPurchaseOrderReference"] == "PO-77"
    assert body["salesInvoiceLines"] == [
        {
            "sequence": 10000,
            "lineType": "Account",
            "lineObjectNumber": "3010",
            "description": "Consulting, November",
            "quantity": 10,
            "unitPrice": 1200.0,
            "discountPercent": 0,
            "taxCode": "25",
        }
    ]


def test_department_from_the_department_object_or_the_tag_group() -> None:
    cust = f.customer()
    lines = [
        {
            "description": "a",
            "quantity": 1,
            "unit_price": 1,
            "account_number": "3010",
            "project": f.project("4005", department="100", tag_code="300", cust=cust),
        },
        {"description": "b", "quantity": 1, "unit_price": 1, "account_number": "3010"},
        {
            "description": "c",
            "quantity": 1,
            "unit_price": 1,
            "account_number": "3010",
            "project": f.project("4006", department="200", tag_code="200", cust=cust),
        },
    ]
    inv = Invoice.model_validate(f.invoice(lines=lines, cust=cust))
    by_dept = t.line_dimensions(
        inv,
        project_dimension="PROJEKT",
        department_dimension="AVDELNING",
        department_source="department",
        tag_group=None,
    )
    assert by_dept == [
        t.LineDims(10000, (("PROJEKT", "4005"), ("AVDELNING", "100"))),
        t.LineDims(30000, (("PROJEKT", "4006"), ("AVDELNING", "200"))),
    ]
    by_tag = t.line_dimensions(
        inv,
        project_dimension="PROJEKT",
        department_dimension="AVDELNING",
        department_source="tag_group",
        tag_group="avdelning",
    )
    assert by_tag[0].values == (("PROJEKT", "4005"), ("AVDELNING", "300"))


def test_missing_department_names_the_project() -> None:
    inv = Invoice.model_validate(
        f.invoice(
            lines=[
                {
                    "description": "a",
                    "quantity": 1,
                    "unit_price": 1,
                    "account_number": "3010",
                    "project": f.project("4005", department=None, tag_code=None),
                }
            ]
        )
    )
    with pytest.raises(Permanent) as err:
        t.line_dimensions(
            inv,
            project_dimension="PROJEKT",
            department_dimension="AVDELNING",
            department_source="department",
            tag_group=None,
        )
    assert err.value.code == "BC-DEPARTMENT-MISSING" and "4005" in err.value.message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "The field No. of table Sales Line contains a value (9999) that cannot be found in the "
            "related table (G/L Account).",
            ("BC-ACCOUNT-MISSING", "G/L account", "9999"),
        ),
        (
            "The field Customer Posting Group of table Customer contains a value (KUNDER-EXP) that "
            "cannot be found in the related table (Customer Posting Group).",
            ("BC-POSTING-GROUP-MISSING", "Customer posting group", "KUNDER-EXP"),
        ),
        (
            "The Customer does not exist. Identification fields and values: No.='10006'",
            ("BC-CUSTOMER-MISSING", "Customer", "10006"),
        ),
        ("Something else entirely", None),
    ],
)
def test_bc_messages_name_the_missing_record(message: str, expected: object) -> None:
    exc = BcValidationError(message, status=400, code="Internal_InvalidTableRelation")
    assert missing_record(exc) == expected
