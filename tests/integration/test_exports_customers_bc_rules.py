"""Customers against BC's own field rules (issue 15, customer points), end to end: RabbitMQ → the
real consumer → the real BC client → the emulator doing what Customer.Table.al does
(test_emulator_conformance_customers.py holds it to the AL), and the organization's digest.

A value BC cannot take must not block the customer: it is left out and a warning reaches the
next digest (not a failure: nothing dead-lettered, nothing "resolved" later).
"""

from __future__ import annotations

import email
import json
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from tests.support import factories as f
from tests.support.exports import ORG, Exports
from tests.support.notify import make_service
from worker.errors import CATALOGUE
from worker.messaging import headers as H
from worker.notify import NotificationRepository
from worker.notify.store import utcnow

CREATED = "moment.customer.created"
UPDATED = "moment.customer.updated"
ADMIN = "ekonomi@example.se"
NO_FORMATS = ["NO ### ### ### MVA", "### ### ### MVA", "NO ### ### ###", "#########"]


async def seed_company(exports: Exports, **company: Any) -> None:
    body = {"name": exports.emulator.company_name, **company}
    environment = {"name": exports.emulator.environment, "companies": [body]}
    await exports.emulator.control.seed(
        {"tenants": [{"id": exports.emulator.tenant_id, "environments": [environment]}]}
    )


async def export(exports: Exports, type_: str, customer: dict[str, Any]) -> list[str]:
    return await exports.done(await exports.send(type_, {"customer": customer}))


async def customer_writes(exports: Exports, since: int, number: str) -> list[dict[str, Any]]:
    """The POST/PATCH customers requests for this customer number after ``since``."""
    rows = await exports.bc_requests(since)
    bc = await exports.customer(number)
    assert bc is not None
    return [
        {"method": r["method"], **json.loads(r["body"])}
        for r in rows
        if r["method"] in ("POST", "PATCH")
        and (
            (r["path"].endswith("/customers") and f'"{number}"' in r["body"])
            or r["path"].endswith(f"/customers({bc['id']})")
        )
    ]


async def digest_mail(exports: Exports) -> EmailMessage:
    """Send the organization's due digest (outbox mailer) and return that one mail."""
    service = make_service(exports.settings, exports.runtime.store)
    assert await service.run_once(now=utcnow() + timedelta(hours=1)) == 1
    [path] = list(exports.settings.outbox_dir.glob("*.eml"))
    return email.message_from_bytes(path.read_bytes(), policy=default_policy)


def body(mail: EmailMessage, subtype: str) -> str:
    part = mail.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


# ---- 1. VAT registration number ----------------------------------------------------------------


async def test_the_organization_number_is_never_sent_as_vat_number(exports: Exports) -> None:
    """bc-api Corrections 1: a Swedish organization number is not a VAT number (BC's SE formats
    refuse it). Without a VAT number in Moment, BC gets none."""
    since = await exports.last_seq()
    cust = f.customer("50100", vat_number=None, organization_number="556677-8899")
    assert await export(exports, CREATED, cust) == ["succeeded"]
    bc = await exports.customer("50100")
    assert bc is not None and bc["taxRegistrationNumber"] == ""
    assert (bc["genBusPostingGroup"], bc["customerPostingGroup"]) == ("INRIKES", "KUNDER")
    writes = await customer_writes(exports, since, "50100")
    assert [w["taxRegistrationNumber"] for w in writes] == [""]
    assert not any("556677-8899" in json.dumps(w) for w in writes)


async def test_values_bc_cannot_take_are_left_out_and_reach_the_digest_as_warnings(
    exports: Exports,
) -> None:
    """The lead's decision for points 1 and 2: too long (> 20, BC's Text[20]) and letters in the
    phone are caught before sending; a VAT number outside BC's formats is known from BC's answer
    and the write repeated once without it. Each customer is created with its posting groups,
    nothing is dead-lettered, and one digest names customer, field, value and what to fix. The
    same customer warned twice before the digest is one line."""
    await exports.save_config(notification_recipients=[{"email": ADMIN}])
    since = await exports.last_seq()
    long_vat = f.customer("50101", vat_number="SE556677889901 (Sverige)")
    bad_format = f.customer("50102", name="Format AB", vat_number="SE-556677-8899")
    phone = f.customer("50103", phone="+46 8 123 45 ext. 12")
    for cust in (long_vat, bad_format, phone):
        assert await export(exports, CREATED, cust) == ["succeeded"]
    # Changed again in Moment before the digest goes: still one line for 50102.
    assert await export(exports, UPDATED, {**bad_format, "email": "new@format.se"}) == ["succeeded"]

    for number in ("50101", "50102", "50103"):
        bc = await exports.customer(number)
        assert bc is not None, number
        assert (bc["genBusPostingGroup"], bc["customerPostingGroup"]) == ("INRIKES", "KUNDER")
    assert (await exports.customer("50101") or {})["taxRegistrationNumber"] == ""
    assert (await exports.customer("50101") or {})["phoneNumber"] == "+46 8 123 45"
    assert (await exports.customer("50102") or {})["taxRegistrationNumber"] == ""
    assert (await exports.customer("50102") or {})["email"] == "new@format.se"
    assert (await exports.customer("50103") or {})["phoneNumber"] == ""
    assert (await exports.customer("50103") or {})["taxRegistrationNumber"] == "SE556677889901"
    assert await exports.dead_count() == 0
    # BC's refusal of the format was answered by one repeat without the number, per write.
    writes = await customer_writes(exports, since, "50102")
    assert [(w["method"], "taxRegistrationNumber" in w) for w in writes] == [
        ("POST", True),
        ("POST", False),
        ("PATCH", True),
        ("PATCH", False),
    ]
    assert "taxRegistrationNumber" not in (await customer_writes(exports, since, "50101"))[0]
    assert "phoneNumber" not in (await customer_writes(exports, since, "50103"))[0]

    # A warning is not a failure: never open, never resolved.
    repo = NotificationRepository(exports.runtime.store)
    assert await repo.open_failures(ORG) == set()
    mail = await digest_mail(exports)
    assert "left out" in mail["Subject"] and "attention" not in mail["Subject"]
    for text in (body(mail, "plain"), body(mail, "html")):
        assert "Customer 50101 (Kund 50101 AB): the VAT registration number" in text
        assert "SE556677889901 (SVERIGE)" in text and "at most 20" in text
        assert "Customer 50102 (Format AB): Business Central did not accept the VAT" in text
        assert "SE-556677-8899" in text and "SE##########01" in text
        assert "Customer 50103 (Kund 50103 AB): the phone number" in text
        assert "+46 8 123 45 ext. 12" in text and "contains letters" in text
        assert "resolved" not in text.lower()
    text = body(mail, "plain")
    assert text.count("Customer 50102 (Format AB)") == 1
    assert "Affected: 2 (error code BC-VAT-NUMBER-LEFT-OUT)" in text
    assert "Affected: 1 (error code BC-PHONE-LEFT-OUT)" in text
    assert CATALOGUE["BC-VAT-NUMBER-LEFT-OUT"].fix in text
    assert CATALOGUE["BC-PHONE-LEFT-OUT"].fix in text
    assert "Failed items are kept" not in text


async def test_a_warned_customer_that_succeeds_later_is_not_reported_resolved(
    exports: Exports,
) -> None:
    """Warnings are items of their own kind: a later clean export resolves nothing and the next
    digest does not report the customer as "transferred after all"."""
    await exports.save_config(notification_recipients=[{"email": ADMIN}])
    cust = f.customer("50104", phone="växel")
    assert await export(exports, CREATED, cust) == ["succeeded"]
    assert await export(exports, UPDATED, {**cust, "phone": "+46 8 123 45"}) == ["succeeded"]
    assert (await exports.customer("50104") or {})["phoneNumber"] == "+46 8 123 45"
    repo = NotificationRepository(exports.runtime.store)
    status = await repo.status(ORG)
    assert status["pending"]["resolved"] == 0 and status["pending"]["failures"] == 0
    mail = await digest_mail(exports)
    text = body(mail, "plain")
    assert "'växel' contains letters" in text
    assert "Resolved since the last message" not in text


# ---- 3. Moving abroad --------------------------------------------------------------------------


async def test_a_customer_moving_abroad_ends_with_the_new_city_post_code_and_country(
    exports: Exports,
) -> None:
    """bc-api Corrections 3 (Customer.Table.al Country/Region Code OnValidate →
    PostCode.CheckClearPostCodeCityCounty; APIV2Customers.Page.al validates city before country):
    one PATCH with city + country + post code would lose the city. The country goes first, then
    the address. When the country does not change, one PATCH as before."""
    await export(exports, CREATED, f.customer("50110"))
    oslo = {"line1": "Karl Johans gate 12", "postal_code": "0154", "city": "Oslo"}
    moved = f.customer("50110", country="NO", vat_number=None)
    moved["invoice_address"] = {**moved["invoice_address"], **oslo, "country_code": "NO"}
    since = await exports.last_seq()
    assert await export(exports, UPDATED, moved) == ["succeeded"]
    bc = await exports.customer("50110")
    assert bc is not None
    assert (bc["city"], bc["postalCode"], bc["country"], bc["addressLine1"]) == (
        "Oslo",
        "0154",
        "NO",
        "Karl Johans gate 12",
    )
    assert (bc["genBusPostingGroup"], bc["customerPostingGroup"]) == ("EU", "KUNDER-EXP")
    writes = await customer_writes(exports, since, "50110")
    # The country alone, then the rest of the address (and the other fields) in one PATCH.
    assert [sorted(k for k in w if k != "method") for w in writes[:1]] == [["country"]]
    assert len(writes) == 2 and writes[1]["city"] == "Oslo"

    since = await exports.last_seq()
    again = {**moved, "name": "Flyttat AS"}
    assert await export(exports, UPDATED, again) == ["succeeded"]
    assert len(await customer_writes(exports, since, "50110")) == 1
    assert (await exports.customer("50110") or {})["city"] == "Oslo"


async def test_moving_abroad_with_a_vat_number_the_new_country_refuses(exports: Exports) -> None:
    """The country trigger also checks the VAT number BC has against the new country's formats
    (Customer.Table.al: `if "Country/Region Code" <> xRec."Country/Region Code" then
    VATRegistrationValidation()`): the Swedish number is blanked, the country set, then the
    Norwegian number sent."""
    await seed_company(exports, vat_registration_formats={"NO": NO_FORMATS})
    await export(exports, CREATED, f.customer("50111"))
    assert (await exports.customer("50111") or {})["taxRegistrationNumber"] == "SE556677889901"
    moved = f.customer("50111", country="NO", vat_number="NO 987 654 321 MVA")
    moved["invoice_address"] = {
        **moved["invoice_address"],
        "postal_code": "0154",
        "city": "Oslo",
        "country_code": "NO",
    }
    assert await export(exports, UPDATED, moved) == ["succeeded"]
    bc = await exports.customer("50111")
    assert bc is not None
    assert (bc["city"], bc["postalCode"], bc["country"], bc["taxRegistrationNumber"]) == (
        "Oslo",
        "0154",
        "NO",
        "NO 987 654 321 MVA",
    )
    assert await exports.dead_count() == 0


async def test_an_address_bcs_post_codes_list_changes_is_a_warning(exports: Exports) -> None:
    """PostCode.Table.al ValidatePostCode: a post code BC's list knows sets city and country from
    the list, even another country when the code is listed only there. The customer is
    transferred; the difference is a warning (letter case alone is none)."""
    await seed_company(
        exports,
        post_codes=[
            {"code": "1000", "city": "Bruxelles", "country": "BE"},
            {"code": "111 22", "city": "STOCKHOLM", "country": "SE"},
        ],
    )
    dk = f.customer("50112", country="DK")
    dk["invoice_address"] = {**dk["invoice_address"], "postal_code": "1000", "city": "København"}
    assert await export(exports, CREATED, dk) == ["succeeded"]
    assert await export(exports, CREATED, f.customer("50113")) == ["succeeded"]
    assert (await exports.customer("50113") or {})["city"] == "STOCKHOLM"
    repo = NotificationRepository(exports.runtime.store)
    await exports.save_config(notification_recipients=[{"email": ADMIN}])
    text = body(await digest_mail(exports), "plain")
    assert "Affected: 1 (error code BC-ADDRESS-FROM-POST-CODES)" in text
    assert "Customer 50112 (Kund 50112 AB): Moment's address 1000, København, DK" in text
    assert "stored in Business Central as 1000, Bruxelles, BE" in text
    assert "50113" not in text
    assert await repo.open_failures(ORG) == set()


# ---- also check: payment terms in another language ---------------------------------------------


async def test_payment_terms_written_in_another_language_never_map_to_a_wrong_term(
    exports: Exports,
) -> None:
    """BC shows a DateFormula in its user's language (French: 3T is three quarters, 30J thirty
    days). Only a day formula BC cannot mean otherwise maps; the others leave BC's default."""
    await seed_company(
        exports,
        language="fr-FR",
        payment_terms=[
            {"code": "3 TRIM", "name": "Trois trimestres", "due_date_calculation": "3Q"}
        ],
    )
    since = await exports.last_seq()
    assert await export(exports, CREATED, f.customer("50120", payment_terms_days=3)) == [
        "succeeded"
    ]
    [post] = await customer_writes(exports, since, "50120")
    assert "paymentTermsId" not in post
    bc = await exports.customer("50120")
    assert bc is not None and bc["paymentTermsId"] == "00000000-0000-0000-0000-000000000000"


# ---- also check: VAT bus. posting group ---------------------------------------------------------


async def test_the_vat_bus_posting_group_follows_the_gen_bus_posting_group(
    exports: Exports,
) -> None:
    """Customer.Table.al Gen. Bus. Posting Group OnValidate sets the group's default VAT Bus.
    Posting Group (Auto Insert Default); bc-sync sets only the two posting groups and never
    taxAreaId (which would set the VAT bus. group), so a customer moving abroad ends with the
    abroad group's VAT bus. posting group."""
    since = await exports.last_seq()
    await export(exports, CREATED, f.customer("50130"))
    assert (await exports.customer("50130") or {})["vatBusPostingGroup"] == "INRIKES"
    abroad = f.customer("50130", country="DE", vat_number=None)
    assert await export(exports, UPDATED, abroad) == ["succeeded"]
    bc = await exports.customer("50130")
    assert bc is not None
    assert (bc["genBusPostingGroup"], bc["vatBusPostingGroup"]) == ("EU", "EU")
    groups = {g["code"]: g["id"] for g in (await exports.company())["vatBusPostingGroups"]}
    assert bc["taxAreaId"] == groups["EU"]
    bodies = [r["body"] for r in await exports.bc_requests(since) if r["method"] != "GET"]
    assert bodies and not any("taxAreaId" in b or "VAT_Bus" in b for b in bodies)


# ---- also check: number series without Manual Nos. ----------------------------------------------


async def test_a_number_series_without_manual_nos_is_a_permanent_error_naming_the_setting(
    exports: Exports,
) -> None:
    """Customer.Table.al TestNoSeries → NoSeries.TestManual("Customer Nos."): BC refuses
    Moment's customer numbers unless the series allows manual numbers. One clear permanent error
    that names the setting; the digest's fix text tells the admin where it is."""
    await seed_company(exports, customer_nos={"code": "KUND", "manual": False})
    since = await exports.last_seq()
    assert await export(exports, CREATED, f.customer("50140")) == ["dead_lettered"]
    [dead] = await exports.dead(1)
    message = dead.headers[H.ERROR_MESSAGE]
    assert dead.headers[H.ERROR_CODE] == "BC-CUSTOMER-NOS-NOT-MANUAL", message
    assert dead.headers[H.ERROR_CLASS] == "permanent"
    for words in ("50140", "'KUND'", "Manual Nos.", "Sales & Receivables Setup"):
        assert words in message, message
    fix = CATALOGUE["BC-CUSTOMER-NOS-NOT-MANUAL"].fix
    assert "Sales & Receivables Setup" in fix and "Customer Nos." in fix and "Manual Nos." in fix
    # Recognised at once: no second attempt without the VAT number.
    posts = [r for r in await exports.bc_requests(since) if r["method"] == "POST"]
    assert len(posts) == 1
    assert await exports.customer("50140") is None
