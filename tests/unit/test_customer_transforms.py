"""Customer transforms against BC's field rules: the VAT number, the phone number, payment-term
formulas in other languages, and the address BC stored (bc-api Corrections 1-3)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import factories as f
from worker.events.models import Customer
from worker.sync import transforms as t


def cust(**over: Any) -> Customer:
    return Customer.model_validate(f.customer("10006", **over))


@pytest.mark.parametrize(
    ("formula", "maps"),
    [
        ("30D", True),
        ("<30D>", True),
        (" 30 d ", True),
        ("30T", False),  # German 30 days, but French 30 quarters, Czech 30 weeks
        ("30J", False),  # French 30 days, but German 30 years
        ("30G", False),  # Italian 30 days
        ("1M", False),
        ("CM+30D", False),
    ],
)
def test_only_a_day_formula_no_language_reads_otherwise_maps(formula: str, maps: bool) -> None:
    terms = (("id-x", "X", formula),)
    assert t.payment_terms_id(30, terms) == ("id-x" if maps else None)


def test_the_vat_number_is_moments_vat_number_upper_cased_never_the_organization_number() -> None:
    assert t.vat_number(cust(vat_number="se556677889901")) == ("SE556677889901", None)
    assert t.vat_number(cust(vat_number=None, organization_number="556677-8899")) == ("", None)
    twenty = "NO 987 654 321 MVA 1"
    assert t.vat_number(cust(vat_number=twenty)) == (twenty, None)


def test_a_vat_number_over_20_characters_is_left_out_with_a_warning() -> None:
    value, warning = t.vat_number(cust(vat_number="SE556677889901 (Sverige)"))
    assert value is None and warning is not None
    assert warning.code == "BC-VAT-NUMBER-LEFT-OUT"
    assert warning.message.startswith("Customer 10006 (Kund 10006 AB): the VAT registration")
    assert "'SE556677889901 (SVERIGE)' has 24 characters" in warning.message
    body = t.customer_export(
        cust(vat_number="SE556677889901 (Sverige)"), local_currency="SEK", payment_terms=None
    )
    assert "taxRegistrationNumber" not in body.body and body.warnings == (warning,)


@pytest.mark.parametrize(
    ("phone", "kept"),
    [
        ("+46 (0)8-123 45 67", True),
        ("08/123 45", True),
        ("+46 8 123 45 ext. 12", False),
        ("växel", False),
        ("08-123 45 67 Åsa", False),
        # Full-width digits are not letters (Char.IsLetter is Unicode L*).
        ("\uff10\uff18-\uff11\uff12\uff13", True),
    ],
)
def test_a_phone_number_with_a_letter_is_left_out_with_a_warning(phone: str, kept: bool) -> None:
    export = t.customer_export(cust(phone=phone), local_currency="SEK", payment_terms=None)
    if kept:
        assert export.body["phoneNumber"] == phone and export.warnings == ()
    else:
        assert "phoneNumber" not in export.body
        [warning] = export.warnings
        assert warning.code == "BC-PHONE-LEFT-OUT"
        assert f"the phone number '{phone}' contains letters" in warning.message


def test_the_address_bc_stored_differs_only_when_more_than_letter_case_changed() -> None:
    c = cust()
    sent = {"city": "Stockholm", "postalCode": "111 22", "country": "SE"}
    assert t.address_changed(c, sent, ("STOCKHOLM", "111 22", "SE")) is None
    warning = t.address_changed(c, sent, ("Bruxelles", "111 22", "BE"))
    assert warning is not None and warning.code == "BC-ADDRESS-FROM-POST-CODES"
    assert "Moment's address 111 22, Stockholm, SE is stored in Business Central as 111 22, " in (
        warning.message
    )
