"""BC answers in the request's language (bc-api.md Corrections 10): the worker asks for English on
every request, each ``$batch`` part included, so the errors it recognises stay recognised; and
where BC's code and structure say enough, a translated answer is classified the same way.

The emulator answers in Swedish whenever a request (or a ``$batch`` part) does not ask for
English (tests/emulator/language.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.support import factories as f
from tests.support.exports import Exports
from worker.bc.auth import TokenProvider
from worker.bc.errors import from_response
from worker.messaging import headers as H
from worker.sync.errors import catalogue_code


def _invoice(number: str, account: str, project: str = "4005") -> dict[str, Any]:
    c = f.customer("10000")
    p = f.project(project, department="100", cust=c)
    line = {
        "description": "Consulting",
        "quantity": 1,
        "unit_price": 1000.0,
        "account_number": account,
        "vat_code": "25",
        "project": p,
    }
    return {"invoice": f.invoice(number, cust=c, lines=[line, {**line, "description": "More"}])}


async def test_every_request_of_an_export_asks_for_english_batch_parts_too(
    exports: Exports, emulator: EmulatorHandle
) -> None:
    """A posted invoice (customer, project value, draft, line dimensions in a $batch, post) and
    one whose account is missing: every BC request and every $batch part carried
    ``Accept-Language: en-US``, so the missing account is still BC-ACCOUNT-MISSING (its only
    sign is the English AL label 'Account does not exist.')."""
    start = await exports.last_seq()
    await exports.send("moment.invoice.created", _invoice("7101", "3010"), id_="ev-ok")
    await exports.send("moment.invoice.created", _invoice("7102", "9999"), id_="ev-bad")
    assert await exports.done("ev-ok") == ["succeeded"]
    assert await exports.done("ev-bad") == ["dead_lettered"]
    [dead] = await exports.dead(1)
    assert dead.headers[H.ERROR_CODE] == "BC-ACCOUNT-MISSING", dead.headers[H.ERROR_MESSAGE]
    assert (await exports.posted("7101"))["status"] == "Open"

    rows = [
        r
        for r in await emulator.control.requests(since=start)
        if r["path"].startswith("/v2.0/") and "/oauth2/" not in r["path"]
    ]
    parts = [r for r in rows if r["batch_parent"] is not None]
    assert parts, "the line dimensions went in a $batch"
    assert {r["accept_language"] for r in rows} == {"en-US"}, [
        (r["method"], r["path"], r["accept_language"])
        for r in rows
        if r["accept_language"] != "en-US"
    ]


@pytest.mark.parametrize(
    ("path", "swedish", "expected"),
    [
        # 404 with the company's code: BC-COMPANY-MISSING whatever the words.
        (
            "companies(00000000-0000-4000-8000-00000000abcd)/customers",
            "Företaget",
            "BC-COMPANY-MISSING",
        ),
        # A stale ETag: the code says "changed concurrently" (transient).
        ("customer", "En annan användare", "BC-UNAVAILABLE"),
    ],
)
async def test_translated_answers_are_classified_by_code(
    bc_client: BCClient, emulator: EmulatorHandle, path: str, swedish: str, expected: str
) -> None:
    """No Accept-Language: the emulator answers in Swedish; the mapping reads BC's code."""
    if path == "customer":
        found = (await bc_client.get("customers?$filter=number eq '10000'")).body["value"][0]
        changed = await bc_client.patch(
            f"customers({found['id']})", {"displayName": "Ändrad AB"}, headers={"If-Match": "*"}
        )
        assert changed.status == 200
        resp = await bc_client.patch(
            f"customers({found['id']})",
            {"displayName": "X"},
            headers={"If-Match": found["@odata.etag"]},  # the version before the change
            language=None,
        )
    else:
        resp = await bc_client.get(f"{emulator.api_root}/{path}", language=None)
    assert resp.status >= 400 and swedish in resp.error_message, resp.error_message
    assert catalogue_code(from_response(resp.status, resp.body)) == expected


async def test_a_translated_table_relation_is_never_given_a_wrong_code(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """BC translates table captions, so a Swedish table relation cannot say which table: it gets
    the generic BC-VALIDATION with BC's words (never a guess); in English (as the worker asks)
    it is BC-POSTING-GROUP-MISSING naming the value."""
    url = f"{emulator.odata_url()}/CustomerCard('10000')"
    patch = {"Customer_Posting_Group": "KUNDER-XX"}
    answers = {}
    for language in (None, "en-US"):
        resp = await bc_client.patch(url, patch, headers={"If-Match": "*"}, language=language)
        assert resp.error_code == "Internal_InvalidTableRelation"
        answers[language] = from_response(resp.status, resp.body)
    assert "(KUNDER-XX)" in answers[None].message
    assert catalogue_code(answers[None]) == "BC-VALIDATION"
    assert catalogue_code(answers["en-US"]) == "BC-POSTING-GROUP-MISSING"


async def test_entra_is_asked_for_english_too(emulator: EmulatorHandle) -> None:
    """The token requests carry the header as well (the worker reads only AADSTS numbers)."""
    provider = TokenProvider(emulator.url, ca_file=emulator.ca_file)
    await emulator.control.clear_requests()
    await provider.token(emulator.tenant_id, emulator.client_id, SecretStr(emulator.client_secret))
    rows = await emulator.control.requests()
    assert rows and {r["accept_language"] for r in rows} == {"en-US"}
