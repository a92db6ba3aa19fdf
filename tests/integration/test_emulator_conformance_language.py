"""Emulator conformance: error texts in the request's language (bc-api.md Corrections 10).

BC translates its messages into the language of ``Accept-Language``; codes and the values
inside a message do not change. The emulator answers in Swedish whenever a request does not
ask for English (no header included), and judges each ``$batch`` part by its own header
(UNCONFIRMED in bc-api §5.5: the stricter reading; see tests/emulator/language.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.fixtures import BCClient, EmulatorHandle

ENGLISH_WORDS = ("does not exist", "cannot be found", "must have a value", "already exists")


async def _line_id(bc: BCClient) -> str:
    inv = await bc.post(
        "salesInvoices",
        {
            "customerNumber": "10000",
            "externalDocumentNumber": "LANG-1",
            "salesInvoiceLines": [
                {"lineType": "Account", "lineObjectNumber": "3010", "quantity": 1}
            ],
        },
    )
    assert inv.status == 201, inv.body
    lines = await bc.get(f"salesInvoices({inv.body['id']})/salesInvoiceLines")
    return str(lines.body["value"][0]["id"])


def _no_english(text: str) -> None:
    assert not any(w in text for w in ENGLISH_WORDS), text


@pytest.mark.parametrize("language", [None, "sv-SE", "de-DE", "sv, en;q=0.5"])
async def test_errors_are_translated_unless_english_is_asked_for(
    bc_client: BCClient, language: str | None
) -> None:
    """Corrections 10: same status and code, a message in another language; the value BC names
    (the account number in parentheses, the customer number) stays as it was."""
    bad_account = {
        "customerNumber": "10000",
        "salesInvoiceLines": [{"lineType": "Account", "lineObjectNumber": "9999"}],
    }
    english = await bc_client.post("salesInvoices", bad_account)
    other = await bc_client.post("salesInvoices", bad_account, language=language)
    assert (english.status, english.error_code) == (400, "Application_DialogException")
    assert english.error_message.startswith("Account does not exist.")
    assert (other.status, other.error_code) == (english.status, english.error_code)
    assert other.error_message.startswith("Kontot finns inte.")
    assert "CorrelationId:" in other.error_message  # BC's tail is kept

    customer = {"customerNumber": "NOPE-1"}
    missing = await bc_client.post("salesInvoices", customer, language=language)
    assert missing.error_code == "Application_DialogException"
    _no_english(missing.error_message)


async def test_english_variants_get_english(bc_client: BCClient) -> None:
    for language in ("en-US", "en", "en-GB", "EN-us", "sv;q=0.2, en-US;q=0.9"):
        resp = await bc_client.get(
            "customers(00000000-0000-0000-0000-000000000001)", language=language
        )
        assert resp.error_message.startswith("The Customer does not exist."), language


async def test_platform_texts_are_translated_but_keep_their_structure(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """TestField, table relation and record-not-found texts: captions translated (so a client
    cannot read the table or field by its English caption), parentheses and Field=Value pairs
    kept; the codes are the same."""
    odata = emulator.odata_url()
    relation = await bc_client.patch(
        f"{odata}/CustomerCard('10000')",
        {"Customer_Posting_Group": "NO-SUCH-GROUP"},
        headers={"If-Match": "*"},
        language=None,
    )
    assert (relation.status, relation.error_code) == (400, "Internal_InvalidTableRelation")
    assert "(NO-SUCH-GROUP)" in relation.error_message
    assert "Customer Posting Group" not in relation.error_message
    _no_english(relation.error_message)

    missing = await bc_client.patch(
        f"{odata}/CustomerCard('NOPE')",
        {"Customer_Posting_Group": "KUNDER"},
        headers={"If-Match": "*"},
        language=None,
    )
    assert (missing.status, missing.error_code) == (404, "Internal_RecordNotFound")
    assert "Nr='NOPE'" in missing.error_message and "Customer" not in missing.error_message

    # A customer without posting groups fails the draft create (SalesHeader.Table.al TestField
    # when the Sell-to / Bill-to Customer No. is validated, bc-api Corrections 5).
    new = await bc_client.post("customers", {"number": "50100", "displayName": "Ny Kund AB"})
    inv = await bc_client.post(
        "salesInvoices",
        {
            "customerNumber": new.body["number"],
            "salesInvoiceLines": [
                {"lineType": "Account", "lineObjectNumber": "3010", "quantity": 1}
            ],
        },
        language=None,
    )
    assert (inv.status, inv.error_code) == (400, "Application_FieldValidationException")
    assert inv.error_message.startswith(
        "Gen. rörelsebokföringsmall måste ha ett värde i Kund: Nr=50100."
    )

    unpublished = await bc_client.get(f"{odata}/NoSuchService", language=None)
    assert unpublished.error_code == "BadRequest_ResourceNotFound"
    assert "'NoSuchService'" in unpublished.error_message
    assert "Resource not found" not in unpublished.error_message


async def _batch(
    bc: BCClient, emulator: EmulatorHandle, ops: list[dict[str, Any]], language: str | None
) -> list[dict[str, Any]]:
    resp = await bc.post(f"{emulator.api_root}/$batch", {"requests": ops}, language=language)
    assert resp.status == 200, resp.body
    return list(resp.body["responses"])


async def test_batch_parts_are_answered_in_their_own_language(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """§5.5 (UNCONFIRMED, stricter reading): the outer Accept-Language is not inherited; a part
    without its own header is answered in Swedish, one with en-US in English."""
    line_id = await _line_id(bc_client)
    url = f"companies({emulator.company_id})/salesInvoiceLines({line_id})/dimensionSetLines"
    made = await bc_client.post(
        f"salesInvoiceLines({line_id})/dimensionSetLines", {"code": "PROJEKT", "valueCode": "4005"}
    )
    assert made.status == 201
    dup = {"method": "POST", "url": url, "body": {"code": "PROJEKT", "valueCode": "4006"}}
    english = {**dup, "headers": {"Content-Type": "application/json", "Accept-Language": "en-US"}}
    bare = {**dup, "headers": {"Content-Type": "application/json"}}
    for outer in ("en-US", None):
        first, second = await _batch(
            bc_client, emulator, [{"id": "1", **bare}, {"id": "2", **english}], outer
        )
        assert first["status"] == second["status"] == 400
        assert (
            first["body"]["error"]["code"]
            == second["body"]["error"]["code"]
            == ("Application_DialogException")
        )
        assert first["body"]["error"]["message"].startswith("Dimensionsuppsättningsraden finns")
        assert second["body"]["error"]["message"].startswith(
            "The dimension set line already exists."
        )
    parts = [e for e in await emulator.control.requests() if e["batch_parent"] is not None]
    assert [p["accept_language"] for p in parts] == [None, "en-US", None, "en-US"]
