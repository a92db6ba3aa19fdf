"""Writes the bad-input corpus: one JSON file per case in this directory.

Run ``python -m tests.corpus.generate`` after changing a case below; the files are checked in so
a reviewer reads each case and its expected outcome without running anything.

A case file holds:
- ``description``: what is wrong with the message;
- the message: ``routing_key`` (default: the envelope's type), ``content_type``, ``headers``,
  ``to_queue`` (publish straight to the exports queue, as a replay does), and one body:
  ``body`` (a JSON value, serialized as is), ``body_text`` (UTF-8 text sent verbatim, e.g. with
  ``NaN``), ``body_base64`` (raw bytes) or ``body_fill`` (``{"prefix", "char", "size"}``, for huge
  bodies without a huge file);
- ``expect``: ``{"outcome": "dead_letter", "code": …, "message_contains"?: …}``,
  ``{"outcome": "skipped", "reason": …}``, or ``{"outcome": "record", "entity": "customers" |
  "projects" | "salesInvoices", "key": …, "fields": {…}}`` (the BC record the emulator must hold).

Every case's message id is the file name, and so is its event id where the body has one.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from tests.support import factories as f

HERE = Path(__file__).parent
ORG = "corpus-org"
CUST = "moment.customer.created"
CUST_UPD = "moment.customer.updated"
PROJ = "moment.project.created"
INV = "moment.invoice.created"

HOSTILE_NAME = "O'Brien \"Quoted\" AB %2F ' or 1 eq 1 and contains(name,'x') $filter=1"
EMOJI = "Ünicode 🦄 Kafé 𝄞 AB"
RTL = "Evil\u202eBA lacipyt\u202c AB"

CASES: list[tuple[str, dict[str, Any]]] = []


def case(name: str, **spec: Any) -> None:
    CASES.append((name, spec))


def env(type_: str, payload: dict[str, Any], name: str, **over: Any) -> dict[str, Any]:
    e = f.envelope(type_, payload, org=ORG, id_=name, time="2026-11-25T10:00:00Z")
    e.update(over)
    return e


def cust(number: str, **over: Any) -> dict[str, Any]:
    return f.customer(number, **over)


def dead(code: str, contains: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"outcome": "dead_letter", "code": code}
    if contains:
        out["message_contains"] = contains
    return out


def customer_record(number: str, **fields: Any) -> dict[str, Any]:
    return {"outcome": "record", "entity": "customers", "key": number, "fields": fields}


def invoice_record(number: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("status", "Open")
    return {"outcome": "record", "entity": "salesInvoices", "key": number, "fields": fields}


def project_record(number: str, **fields: Any) -> dict[str, Any]:
    return {"outcome": "record", "entity": "projects", "key": number, "fields": fields}


def invoice(number: str, cust_no: str, **over: Any) -> dict[str, Any]:
    c = cust(cust_no)
    p = f.project("4005", name="Webbplats relansering", department="200", cust=c)
    line = {
        "description": "Consulting",
        "quantity": 2,
        "unit_price": 100.0,
        "discount_percent": 0,
        "account_number": "3010",
        "vat_code": "25",
        "project": p,
    }
    inv = f.invoice(number, cust=c, lines=[line])
    inv.update(over)
    return inv


def line_of(inv: dict[str, Any], **over: Any) -> dict[str, Any]:
    line: dict[str, Any] = copy.deepcopy(inv["lines"][0])
    line.update(over)
    return line


INVALID = "EVENT-INVALID"


def build() -> None:
    good = cust("CGOOD")
    good_body = env(CUST, {"customer": good}, "x")

    # --- not an event at all ------------------------------------------------------------
    case("invalid-json", routing_key=CUST, body_text="{not json", expect=dead(INVALID, "not JSON"))
    case("empty-body", routing_key=CUST, body_text="", expect=dead(INVALID, "empty"))
    case(
        "huge-10mb-json",
        routing_key=CUST,
        body_fill={"prefix": '{"specversion":"1.0","pad":"', "char": "A", "size": 10_000_000},
        expect=dead(INVALID, "exceeds"),
    )
    case(
        "huge-10mb-garbage",
        routing_key=CUST,
        body_fill={"prefix": "", "char": "\u00ff", "size": 10_000_000},
        expect=dead(INVALID, "exceeds"),
    )
    case("json-array", routing_key=CUST, body=[good_body], expect=dead(INVALID, "JSON object"))
    case("json-string", routing_key=CUST, body="hello", expect=dead(INVALID, "JSON object"))
    case("json-null", routing_key=CUST, body=None, expect=dead(INVALID, "JSON object"))
    case(
        "invalid-utf8",
        routing_key=CUST,
        body_base64=base64.b64encode(b'{"id": "\xff\xfe\xfa"}').decode(),
        expect=dead(INVALID, "not JSON"),
    )
    case(
        "xml-content-type",
        routing_key=CUST,
        content_type="application/xml",
        body_text="<event><type>moment.customer.created</type></event>",
        expect=dead(INVALID, "not JSON"),
    )
    case(
        "wrong-content-type-valid-body",
        description="text/plain on a valid structured CloudEvent: the body decides",
        content_type="text/plain",
        body=env(CUST, {"customer": cust("CCT1")}, "wrong-content-type-valid-body"),
        expect=customer_record("CCT1", displayName="Kund CCT1 AB"),
    )
    case(
        "binary-mode-cloudevent",
        description="binary mode (ce-* headers, data as body) is not what the contract says",
        routing_key=CUST,
        content_type="application/json",
        headers={"ce-specversion": "1.0", "ce-type": CUST, "ce-id": "b1", "ce-source": "/m"},
        body={"customer": cust("CBIN")},
        expect=dead(INVALID, "specversion"),
    )
    case(
        "not-a-cloudevent",
        routing_key=CUST,
        body={"customer": cust("CNCE"), "kind": "customer"},
        expect=dead(INVALID, "not a valid CloudEvent"),
    )
    e = env(CUST, {"customer": cust("CSV")}, "specversion-03")
    e["specversion"] = "0.3"
    case("specversion-03", body=e, expect=dead(INVALID, "specversion"))
    e = env(CUST, {"customer": cust("CNOID")}, "missing-id")
    del e["id"]
    case("missing-id", body=e, expect=dead(INVALID, "id"))
    case(
        "empty-id",
        body=env(CUST, {"customer": cust("CEID")}, "empty-id", id="  "),
        expect=dead(INVALID, "id"),
    )
    e = env(CUST, {"customer": cust("CNOORG")}, "missing-org")
    del e["organizationid"]
    case("missing-org", body=e, expect=dead(INVALID, "organizationid"))
    case(
        "org-is-number",
        body=env(CUST, {"customer": cust("CORGN")}, "org-is-number", organizationid=42),
        expect=dead(INVALID, "organizationid"),
    )
    case(
        "org-too-long",
        body=env(CUST, {"customer": cust("CORGL")}, "org-too-long", organizationid="o" * 500),
        expect=dead(INVALID, "organizationid"),
    )
    case(
        "org-with-crlf",
        body=env(
            CUST, {"customer": cust("CORGC")}, "org-with-crlf", organizationid="corpus\r\norg"
        ),
        expect=dead(INVALID, "organizationid"),
    )
    case(
        "org-with-nul",
        body=env(
            CUST, {"customer": cust("CORG0")}, "org-with-nul", organizationid="corpus-org\u0000"
        ),
        expect=dead(INVALID, "organizationid"),
    )
    case(
        "data-is-list",
        body=env(CUST, {}, "data-is-list", data=[good]),
        expect=dead(INVALID, "data"),
    )
    e = env(CUST, {}, "data-missing")
    del e["data"]
    case("data-missing", body=e, expect=dead(INVALID, "data"))
    case(
        "time-garbage",
        body=env(CUST, {"customer": cust("CTIME")}, "time-garbage", time="yesterday"),
        expect=dead(INVALID, "time"),
    )
    case(
        "unknown-type",
        routing_key=CUST,
        body=env("moment.customer.deleted", {"customer": cust("CUNK")}, "unknown-type"),
        expect=dead("EVENT-UNKNOWN-TYPE"),
    )
    case(
        "outgoing-type-incoming",
        description="one of our own outgoing types sent to us",
        routing_key=CUST,
        body=env("bc.customer.exported", {"object_type": "customer"}, "outgoing-type-incoming"),
        expect=dead("EVENT-UNKNOWN-TYPE"),
    )
    case(
        "type-mismatches-routing-key",
        routing_key=CUST,
        body=env(INV, {"invoice": invoice("9001", "CMIS")}, "type-mismatches-routing-key"),
        expect=dead(INVALID, "routing key"),
    )

    # --- customer data ---------------------------------------------------------------------
    c = cust("CNOADDR")
    del c["invoice_address"]
    case(
        "customer-no-invoice-address",
        body=env(CUST, {"customer": c}, "customer-no-invoice-address"),
        expect=dead(INVALID, "invoice_address"),
    )
    case(
        "customer-null-invoice-address",
        body=env(CUST, {"customer": cust("CNULLA", invoice_address=None)}, "customer-null-address"),
        expect=dead(INVALID, "invoice_address"),
    )
    c = cust("CNONUM")
    del c["number"]
    case(
        "customer-missing-number",
        body=env(CUST, {"customer": c}, "customer-missing-number"),
        expect=dead(INVALID, "number"),
    )
    c = cust("X")
    c["number"] = 10006
    case(
        "customer-number-is-int",
        body=env(CUST, {"customer": c}, "customer-number-is-int"),
        expect=dead(INVALID, "number"),
    )
    case(
        "customer-empty-name",
        body=env(CUST, {"customer": cust("CEMPTY", name="   ")}, "customer-empty-name"),
        expect=dead(INVALID, "name"),
    )
    case(
        "customer-name-only-control-chars",
        body=env(CUST, {"customer": cust("CCTRL", name="\u0001\u0002\u200f")}, "name-ctrl"),
        expect=dead("BC-VALIDATION", "no name"),
    )
    case(
        "customer-terms-wrong-type",
        body=env(
            CUST, {"customer": cust("CTERMS", payment_terms_days="thirty")}, "terms-wrong-type"
        ),
        expect=dead(INVALID, "payment_terms_days"),
    )
    case(
        "customer-terms-negative",
        body=env(CUST, {"customer": cust("CTERMN", payment_terms_days=-5)}, "terms-negative"),
        expect=dead(INVALID, "payment_terms_days"),
    )
    case(
        "customer-country-name",
        body=env(CUST, {"customer": cust("CCNTRY", country="Sweden")}, "country-name"),
        expect=dead(INVALID, "country_code"),
    )
    case(
        "customer-currency-garbage",
        body=env(CUST, {"customer": cust("CCUR", currency_code="KRONOR")}, "currency-garbage"),
        expect=dead(INVALID, "currency_code"),
    )
    case(
        "customer-number-too-long",
        body=env(CUST, {"customer": cust("C" * 21)}, "customer-number-too-long"),
        expect=dead("BC-VALIDATION", "allows 20"),
    )
    case(
        "customer-number-crlf",
        body=env(CUST, {"customer": cust("C1\r\nC2")}, "customer-number-crlf"),
        expect=dead("BC-VALIDATION", "characters"),
    )
    case(
        "customer-number-nul",
        body=env(CUST, {"customer": cust("C1\u0000")}, "customer-number-nul"),
        expect=dead("BC-VALIDATION", "characters"),
    )
    case(
        "customer-number-odata-injection",
        description="a filter that matched everything would update customer 10000 instead",
        body=env(CUST, {"customer": cust("' or 1 eq 1")}, "customer-number-odata-injection"),
        expect=customer_record("' OR 1 EQ 1", displayName="Kund ' or 1 eq 1 AB"),
    )
    case(
        "customer-number-percent-2f",
        body=env(CUST, {"customer": cust("A%2FB")}, "customer-number-percent-2f"),
        expect=customer_record("A%2FB", displayName="Kund A%2FB AB"),
    )
    case(
        "customer-number-slash",
        body=env(CUST, {"customer": cust("A/B")}, "customer-number-slash"),
        expect=customer_record("A/B", genBusPostingGroup="INRIKES"),
    )
    case(
        "customer-number-quote",
        body=env(CUST, {"customer": cust("X'Y")}, "customer-number-quote"),
        expect=customer_record("X'Y", customerPostingGroup="KUNDER"),
    )
    case(
        "customer-number-odata-ops",
        body=env(CUST, {"customer": cust("1) or (1")}, "customer-number-odata-ops"),
        expect=customer_record("1) OR (1"),
    )
    case(
        "customer-number-hash-question",
        body=env(CUST, {"customer": cust("N#1?a=b&c")}, "customer-number-hash-question"),
        expect=customer_record("N#1?A=B&C"),
    )
    case(
        "customer-number-300k",
        description="would make dead-letter headers larger than an AMQP frame",
        body=env(CUST, {"customer": cust("N")}, "customer-number-300k"),
        repeat=[{"path": ["data", "customer", "number"], "text": "N", "count": 300_000}],
        expect=dead(INVALID, "data.customer.number"),
    )
    case(
        "event-id-300k",
        body=env(CUST, {"customer": cust("CBIGID")}, "I"),
        repeat=[{"path": ["id"], "text": "I", "count": 300_000}],
        expect=dead(INVALID, "id"),
    )
    case(
        "customer-name-900k",
        body=env(CUST, {"customer": cust("CBIGN")}, "customer-name-900k"),
        repeat=[{"path": ["data", "customer", "name"], "text": "B", "count": 900_000}],
        expect=customer_record("CBIGN", displayName="B" * 100),
    )
    case(
        "customer-name-hostile",
        body=env(CUST, {"customer": cust("CHOST", name=HOSTILE_NAME)}, "customer-name-hostile"),
        expect=customer_record("CHOST", displayName=HOSTILE_NAME[:100]),
    )
    case(
        "customer-name-crlf",
        body=env(CUST, {"customer": cust("CCRLF", name="Line1\r\nLine2 AB")}, "name-crlf"),
        expect=customer_record("CCRLF", displayName="Line1 Line2 AB"),
    )
    case(
        "customer-name-nul",
        body=env(CUST, {"customer": cust("CNUL", name="Nul\u0000Byte AB")}, "name-nul"),
        expect=customer_record("CNUL", displayName="Nul Byte AB"),
    )
    case(
        "customer-name-rtl",
        body=env(CUST, {"customer": cust("CRTL", name=RTL)}, "customer-name-rtl"),
        expect=customer_record("CRTL", displayName="Evil BA lacipyt AB"),
    )
    case(
        "customer-name-emoji",
        body=env(CUST, {"customer": cust("CEMOJI", name=EMOJI)}, "customer-name-emoji"),
        expect=customer_record("CEMOJI", displayName=EMOJI),
    )
    case(
        "customer-name-too-long",
        body=env(CUST, {"customer": cust("CLONG", name="N" * 500)}, "customer-name-too-long"),
        expect=customer_record("CLONG", displayName="N" * 100),
    )
    c = cust("CCITY")
    c["invoice_address"]["city"] = "Stad" * 50
    c["invoice_address"]["line1"] = "Gatan 1\r\n'; DROP TABLE customers; --"
    case(
        "customer-address-long-and-hostile",
        body=env(CUST, {"customer": c}, "customer-address-long-and-hostile"),
        expect=customer_record(
            "CCITY", city=("Stad" * 50)[:30], addressLine1="Gatan 1 '; DROP TABLE customers; --"
        ),
    )
    case(
        "customer-email-hostile",
        body=env(
            CUST,
            {"customer": cust("CMAIL", email="a@b.se\r\nBcc: evil@example.com")},
            "customer-email-hostile",
        ),
        expect=customer_record("CMAIL", email="a@b.se Bcc: evil@example.com"),
    )
    case(
        "customer-updated-hostile",
        body=env(CUST_UPD, {"customer": cust("CUPD", name="Upd 🦄 'x' \u202e")}, "cust-upd"),
        expect=customer_record("CUPD", displayName="Upd 🦄 'x'"),
    )
    case(
        "customer-extra-fields",
        description="unknown fields are accepted (forward compatible)",
        body=env(
            CUST,
            {"customer": cust("CEXTRA", shoe_size=44, nested={"a": [1, 2]}), "extra": True},
            "customer-extra-fields",
            extensionx="y",  # CloudEvents names: a-z0-9 only (see the cases at the end)
        ),
        expect=customer_record("CEXTRA", displayName="Kund CEXTRA AB"),
    )

    # --- projects ----------------------------------------------------------------------------
    case(
        "project-number-quote",
        body=env(PROJ, {"project": f.project("P'1", name="Quote 'n' \"dq\"")}, "project-quote"),
        expect=project_record("P'1", displayName="Quote 'n' \"dq\""),
    )
    case(
        "project-name-emoji-rtl",
        body=env(PROJ, {"project": f.project("P-EMO", name=EMOJI + RTL)}, "project-emoji-rtl"),
        expect=project_record("P-EMO", displayName=(EMOJI + "Evil BA lacipyt AB")[:50]),
    )
    case(
        "project-number-percent",
        body=env(PROJ, {"project": f.project("P%2F1", name="Pct")}, "project-number-percent"),
        expect=project_record("P%2F1", displayName="Pct"),
    )
    case(
        "project-number-too-long",
        body=env(PROJ, {"project": f.project("P" * 25)}, "project-number-too-long"),
        expect=dead("BC-VALIDATION", "allows 20"),
    )
    case(
        "project-tags-wrong-type",
        body=env(PROJ, {"project": f.project("P-TAG", tags="Avdelning")}, "project-tags"),
        expect=dead(INVALID, "tags"),
    )
    p = f.project("P-NONAME")
    del p["name"]
    case(
        "project-missing-name",
        body=env(PROJ, {"project": p}, "project-missing-name"),
        expect=dead(INVALID, "name"),
    )

    # --- invoices ----------------------------------------------------------------------------
    case(
        "invoice-no-lines",
        body=env(INV, {"invoice": invoice("9101", "CI01", lines=[])}, "invoice-no-lines"),
        expect=dead(INVALID, "lines"),
    )
    case(
        "invoice-date-feb-30",
        body=env(
            INV, {"invoice": invoice("9102", "CI02", invoice_date="2026-02-30")}, "inv-feb-30"
        ),
        expect=dead(INVALID, "invoice_date"),
    )
    case(
        "invoice-due-date-garbage",
        body=env(INV, {"invoice": invoice("9103", "CI03", due_date="tomorrow")}, "inv-due"),
        expect=dead(INVALID, "due_date"),
    )
    base = invoice("9104", "CI04")
    text = json.dumps(env(INV, {"invoice": base}, "invoice-quantity-nan"))
    case(
        "invoice-quantity-nan",
        routing_key=INV,
        body_text=text.replace('"quantity": 2', '"quantity": NaN'),
        expect=dead(INVALID, "quantity"),
    )
    base = invoice("9105", "CI05")
    text = json.dumps(env(INV, {"invoice": base}, "invoice-price-infinity"))
    case(
        "invoice-price-infinity",
        routing_key=INV,
        body_text=text.replace('"unit_price": 100.0', '"unit_price": Infinity'),
        expect=dead(INVALID, "unit_price"),
    )
    base = invoice("9106", "CI06")
    text = json.dumps(env(INV, {"invoice": base}, "invoice-price-overflow"))
    case(
        "invoice-price-overflow",
        description="1e999 parses as infinity",
        routing_key=INV,
        body_text=text.replace('"unit_price": 100.0', '"unit_price": -1e999'),
        expect=dead(INVALID, "unit_price"),
    )
    base = invoice("9107", "CI07")
    base["lines"] = [line_of(base, quantity="ten")]
    case(
        "invoice-quantity-text",
        body=env(INV, {"invoice": base}, "invoice-quantity-text"),
        expect=dead(INVALID, "quantity"),
    )
    base = invoice("9108", "CI08")
    base["lines"] = [line_of(base, discount_percent=150)]
    case(
        "invoice-discount-over-100",
        body=env(INV, {"invoice": base}, "invoice-discount-over-100"),
        expect=dead(INVALID, "discount_percent"),
    )
    base = invoice("9109", "CI09")
    base["lines"] = [line_of(base, discount_percent=-1)]
    case(
        "invoice-discount-negative",
        body=env(INV, {"invoice": base}, "invoice-discount-negative"),
        expect=dead(INVALID, "discount_percent"),
    )
    base = invoice("9110", "CI10")
    base["lines"] = [
        line_of(base, quantity=10, unit_price=100.0),
        line_of(base, description="Credit for late delivery", quantity=-2, unit_price=100.0),
    ]
    case(
        "invoice-negative-quantity-line",
        description="a credit line on an invoice whose total stays positive",
        body=env(INV, {"invoice": base}, "invoice-negative-quantity-line"),
        expect=invoice_record("9110", totalAmountExcludingTax=800.0),
    )
    base = invoice("9111", "10000")
    base["lines"] = [line_of(base, account_number="9999")]
    case(
        "invoice-account-missing",
        body=env(INV, {"invoice": base}, "invoice-account-missing"),
        expect=dead("BC-ACCOUNT-MISSING", "9999"),
    )
    case(
        "invoice-number-odata-injection",
        body=env(INV, {"invoice": invoice("' or 1 eq 1", "CI12")}, "invoice-number-injection"),
        expect=invoice_record("' OR 1 EQ 1", customerNumber="CI12"),
    )
    case(
        "invoice-number-injection-again",
        description="the same invoice again under another event id: still one BC invoice",
        body=env(INV, {"invoice": invoice("' or 1 eq 1", "CI12")}, "invoice-injection-again"),
        expect=invoice_record("' OR 1 EQ 1", customerNumber="CI12"),
    )
    case(
        "invoice-number-percent-slash",
        body=env(INV, {"invoice": invoice("F%2F1/2", "CI13")}, "invoice-number-percent-slash"),
        expect=invoice_record("F%2F1/2", customerNumber="CI13"),
    )
    case(
        "invoice-number-too-long",
        body=env(INV, {"invoice": invoice("9" * 40, "CI14")}, "invoice-number-too-long"),
        expect=dead("BC-VALIDATION", "allows 35"),
    )
    base = invoice("9115", "CI15")
    base["lines"] = [line_of(base, description="Rad\r\nmed\u0000NUL \u202eRTL 🦄 ' or 1 eq 1")]
    case(
        "invoice-line-description-hostile",
        body=env(INV, {"invoice": base}, "invoice-line-description-hostile"),
        expect=invoice_record("9115", customerNumber="CI15"),
    )
    case(
        "invoice-reference-long-hostile",
        body=env(
            INV,
            {"invoice": invoice("9116", "CI16", your_reference="PO'77\r\n" + "R" * 100)},
            "invoice-reference-long-hostile",
        ),
        expect=invoice_record("9116", customerPurchaseOrderReference=("PO'77 " + "R" * 100)[:35]),
    )
    inv = invoice("9117", "CI17")
    del inv["customer"]["invoice_address"]
    case(
        "invoice-customer-no-address",
        body=env(INV, {"invoice": inv}, "invoice-customer-no-address"),
        expect=dead(INVALID, "invoice_address"),
    )
    base = invoice("9118", "CI18")
    base["lines"] = [line_of(base, project=f.project("4005", department=None, tag_code=None))]
    case(
        "invoice-project-without-department",
        body=env(INV, {"invoice": base}, "invoice-project-without-department"),
        expect=dead("BC-DEPARTMENT-MISSING", "4005"),
    )
    inv = invoice("9119", "CI19")
    del inv["lines"][0]["account_number"]
    case(
        "invoice-line-missing-account",
        body=env(INV, {"invoice": inv}, "invoice-line-missing-account"),
        expect=dead(INVALID, "account_number"),
    )
    case(
        "invoice-lines-not-a-list",
        body=env(INV, {"invoice": invoice("9120", "CI20", lines={"0": {}})}, "inv-lines-dict"),
        expect=dead(INVALID, "lines"),
    )

    # --- organizations -------------------------------------------------------------------------
    case(
        "org-without-config",
        body=env(CUST, {"customer": cust("CNOCFG")}, "org-without-config", organizationid="nobody"),
        expect={"outcome": "skipped", "reason": "not_configured"},
    )
    case(
        "org-other-case",
        description="organization ids are exact: another case is another organization",
        body=env(CUST, {"customer": cust("CCASE")}, "org-other-case", organizationid="CORPUS-ORG"),
        expect={"outcome": "skipped", "reason": "not_configured"},
    )
    case(
        "org-wildcard",
        body=env(CUST, {"customer": cust("CWILD")}, "org-wildcard", organizationid="corpus-%"),
        expect={"outcome": "skipped", "reason": "not_configured"},
    )

    # --- replayed or edited headers ------------------------------------------------------------
    case(
        "forged-attempt-high",
        headers={"x-bc-attempt": 99},
        body=env(CUST, {"customer": cust("CH01")}, "forged-attempt-high"),
        expect=customer_record("CH01"),
    )
    case(
        "forged-attempt-garbage",
        headers={"x-bc-attempt": "lots", "x-bc-first-failure": {"nested": True}},
        body=env(CUST, {"customer": cust("CH02")}, "forged-attempt-garbage"),
        expect=customer_record("CH02"),
    )
    case(
        "forged-attempt-negative",
        headers={"x-bc-attempt": -5},
        body=env(CUST, {"customer": cust("CH03")}, "forged-attempt-negative"),
        expect=customer_record("CH03"),
    )
    case(
        "garbage-routing-key-header",
        headers={"x-bc-routing-key": "../../etc/passwd"},
        body=env(CUST, {"customer": cust("CH04")}, "garbage-routing-key-header"),
        expect=customer_record("CH04"),
    )
    case(
        "forged-routing-key-other-type",
        headers={"x-bc-routing-key": INV},
        body=env(CUST, {"customer": cust("CH05")}, "forged-routing-key-other-type"),
        expect=dead(INVALID, "routing key"),
    )
    case(
        "garbage-history",
        headers={"x-bc-history": "not a list", "x-bc-error-code": 7},
        body=env(CUST, {"customer": cust("CH06")}, "garbage-history"),
        expect=customer_record("CH06"),
    )
    case(
        "huge-history-bad-event",
        description="a forged 500-entry history stays bounded on the dead letter",
        headers={
            "x-bc-attempt": 3,
            "x-bc-history": [{"code": "X", "message": "m" * 50}] * 500,
        },
        body=env(CUST, {"customer": cust("C" * 30)}, "huge-history-bad-event"),
        expect=dead("BC-VALIDATION", "allows 20"),
    )
    case(
        "replayed-dead-letter-headers",
        description="a dead letter's headers left on a message published again",
        headers={
            "x-bc-error-code": "BC-ACCOUNT-MISSING",
            "x-bc-error-class": "permanent",
            "x-bc-attempts": 6,
            "x-bc-org": "someone-else",
            "x-bc-event-id": "other",
            "x-bc-replay-id": "r-1",
        },
        body=env(CUST, {"customer": cust("CH07")}, "replayed-dead-letter-headers"),
        expect=customer_record("CH07"),
    )
    case(
        "odd-header-types",
        headers={"x-bc-attempt": 1.5, "x-custom": [1, "two", {"3": None}], "x-bool": True},
        body=env(CUST, {"customer": cust("CH08")}, "odd-header-types"),
        expect=customer_record("CH08"),
    )
    case(
        "direct-to-queue-no-routing-header",
        description="published straight to the exports queue, as a replay tool might",
        to_queue=True,
        body=env(CUST, {"customer": cust("CH09")}, "direct-to-queue-no-routing-header"),
        expect=customer_record("CH09"),
    )

    # --- CloudEvents 1.0 envelope rules (issue 21) -------------------------------------------
    case(
        "extension-name-not-cloudevents",
        description="an extension attribute name with `_` (CloudEvents allows only a-z0-9)",
        body=env(CUST, {"customer": cust("CEXTN")}, "extension-name-not-cloudevents", trace_id="x"),
        expect=dead(INVALID, "trace_id"),
    )
    e = env(CUST, {"customer": cust("CTNULL")}, "time-null")
    e["time"] = None
    case(
        "time-null",
        description="`time` present but null (CloudEvents: leave it out instead)",
        body=e,
        expect=dead(INVALID, "time"),
    )


def main() -> None:
    build()
    for old in HERE.glob("*.json"):
        old.unlink()
    names = set()
    for i, (name, spec) in enumerate(CASES, 1):
        assert name not in names, name
        names.add(name)
        path = HERE / f"{i:03d}-{name}.json"
        path.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(CASES)} cases to {HERE}")


if __name__ == "__main__":
    main()
