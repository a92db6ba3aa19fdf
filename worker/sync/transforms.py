"""Pure transforms from Moment snapshots to Business Central payloads (no I/O).

Free text is cleaned of control characters and cut to BC's field lengths (bc-api §4); an
identifier that BC cannot hold (a number or reference longer than its field) is an error,
because cutting it would change what it points to.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.errors import Permanent
from worker.events.handlers import DataWarning
from worker.events.models import Customer, Invoice, InvoiceLine, Project

# BC field lengths (bc-api §4.2 customers, §4.7 dimension values, §4.11/4.12 sales invoices).
CUSTOMER_LIMITS = {
    "displayName": 100,
    "addressLine1": 100,
    "addressLine2": 50,
    "city": 30,
    "postalCode": 20,
    "country": 10,
    "email": 80,
    "phoneNumber": 30,
    "website": 255,
    # Customer.Table.al field(86; "VAT Registration No."; Text[20]); the API page's own
    # variable is Text[50], but the table field decides (bc-api Corrections 1).
    "taxRegistrationNumber": 20,
}
NUMBER_MAX = 20  # customer No., dimension value Code, G/L account No.
EXTERNAL_DOCUMENT_MAX = 35
REFERENCE_MAX = 35
LINE_DESCRIPTION_MAX = 100
DIMENSION_VALUE_NAME_MAX = 50
# salesInvoiceLines.taxCode takes 50 characters but BC keeps only the first 20, silently
# (APIV2SalesInvoiceLines.Page.al: COPYSTR(Rec."Tax Code", 1, 20) into "VAT Prod. Posting
# Group"): a longer code could select another VAT group. The event contract refuses it first.
TAX_CODE_MAX = 20
LINE_STEP = 10000  # BC's own line-number step

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+")


def clean(text: str | None, limit: int) -> str:
    """Text safe for a BC text field: no control or bidi characters, cut to ``limit``."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", text)).strip()
    text = re.sub(r" {2,}", " ", text)
    return text[:limit].rstrip()


def identifier(value: str, limit: int, what: str, subject: str) -> str:
    """An identifier BC must store unchanged; too long or unprintable → a permanent error."""
    text = value.strip()
    if not text or _CONTROL.search(text):
        raise Permanent(
            "BC-VALIDATION",
            f"{what} {value!r} contains characters BC cannot store.",
            subject=subject,
        )
    if len(text) > limit:
        raise Permanent(
            "BC-VALIDATION",
            f"{what} '{text}' has {len(text)} characters; Business Central allows {limit}.",
            subject=subject,
        )
    return text


def bc_code(value: str, limit: int, what: str, subject: str) -> str:
    """BC Code fields are upper case (BC upper-cases them on insert)."""
    return identifier(value, limit, what, subject).upper()


def currency(code: str | None, local_currency: str) -> str:
    """``currencyCode`` to send: blank for the local currency (BC stores it blank; sending the
    LCY code would do too: TranslateCurrencyCodeToNAVCurrencyCode), anything else as it is."""
    code = (code or "").strip().upper()
    return "" if not code or code == local_currency.strip().upper() else code


def currency_read(code: str | None, local_currency: str) -> str:
    """A ``currencyCode`` BC answered, as a code: BC shows the local currency as the LCY code
    (GraphMgtGeneralTools.Codeunit.al, TranslateNAVCurrencyCodeToCurrencyCode; bc-api
    Corrections 9), but blank (a company without an LCY code in its G/L setup) means the local
    currency too."""
    return (code or local_currency).strip().upper()


def is_domestic(customer: Customer, company_country: str) -> bool:
    """Domestic when the invoice address is in the BC company's country."""
    return customer.invoice_address.country_code.upper() == company_country.strip().upper()


@dataclass(frozen=True)
class PostingGroupChoice:
    gen_bus_posting_group: str
    customer_posting_group: str
    domestic: bool


def posting_groups(
    customer: Customer, company_country: str, domestic: tuple[str, str], abroad: tuple[str, str]
) -> PostingGroupChoice:
    """The configured (gen. bus., customer) posting groups for this customer's address."""
    home = is_domestic(customer, company_country)
    gen, cust = domestic if home else abroad
    return PostingGroupChoice(gen, cust, home)


# A due-date formula of whole days. BC shows a DateFormula in its user's language (French
# "30J", German "30T"; bc-api "Also check", languages.py of the emulator), and the same letter
# means another unit in another language (French "3T" is three quarters, German "30J" thirty
# years). Only "D" is a day wherever it occurs, and English is what the client asks for
# (Accept-Language: en-US), so only "<n>D" (or the language-independent "<<n>D>") maps; any
# other formula maps to nothing and BC's own default applies, never a wrong term.
_DAYS = re.compile(r"^<?\s*(\d+)\s*D\s*>?$", re.IGNORECASE)


def payment_terms_id(days: int | None, terms: Sequence[tuple[str, str, str]]) -> str | None:
    """BC payment terms id whose due-date formula is ``<days>D``; ``terms`` = (id, code, formula).

    None when Moment has no terms or BC has no matching code: BC's default then applies.
    """
    if days is None:
        return None
    for term_id, _code, formula in sorted(terms, key=lambda t: t[1]):
        match = _DAYS.match(formula.strip())
        if match and int(match.group(1)) == days:
            return term_id
    return None


@dataclass(frozen=True)
class CustomerExport:
    """The ``POST/PATCH customers`` body and the values left out of it because BC cannot take
    them (each with the warning a person reads in the digest)."""

    body: dict[str, Any]
    warnings: tuple[DataWarning, ...] = ()


# Codes of the warnings (worker.errors.CATALOGUE has their words).
VAT_LEFT_OUT = "BC-VAT-NUMBER-LEFT-OUT"
PHONE_LEFT_OUT = "BC-PHONE-LEFT-OUT"
ADDRESS_FROM_POST_CODES = "BC-ADDRESS-FROM-POST-CODES"
_NOT_SENT = "It was not sent to Business Central; correct it in Moment."


def customer_label(customer: Customer) -> str:
    """``Customer 10006 (Acme AB)``: how warnings name a customer."""
    name = clean(customer.name, CUSTOMER_LIMITS["displayName"])
    return f"Customer {customer.number} ({name})" if name else f"Customer {customer.number}"


def vat_number(customer: Customer) -> tuple[str | None, DataWarning | None]:
    """The VAT registration number to send: Moment's VAT number, upper-cased as BC stores it,
    or blank when there is none. Never the organization number: it is not a VAT number (a
    Swedish "556677-8899" fails BC's SE format). Longer than BC's 20 characters → None (left
    out) and a warning."""
    value = clean(customer.vat_number, 200).upper()
    limit = CUSTOMER_LIMITS["taxRegistrationNumber"]
    if len(value) > limit:
        return None, DataWarning(
            VAT_LEFT_OUT,
            f"{customer_label(customer)}: the VAT registration number '{value}' has "
            f"{len(value)} characters; Business Central takes at most {limit}. {_NOT_SENT}",
        )
    return value, None


def vat_rejected(customer: Customer, value: str, bc_message: str) -> DataWarning:
    """The warning for a VAT number BC refused (e.g. its country's VAT Registration No.
    Formats); ``bc_message`` is BC's own words."""
    country = customer.invoice_address.country_code.upper()
    return DataWarning(
        VAT_LEFT_OUT,
        f"{customer_label(customer)}: Business Central did not accept the VAT registration "
        f"number '{value}' for country {country} ({bc_message}). {_NOT_SENT}",
    )


def phone_number(customer: Customer) -> tuple[str | None, DataWarning | None]:
    """The phone number to send; one with a letter (BC's rule: ``Char.IsLetter`` on any
    character, Customer.Table.al "Phone No." OnValidate) → None (left out) and a warning."""
    value = clean(customer.phone, CUSTOMER_LIMITS["phoneNumber"])
    # str.isalpha() is Unicode categories L*: the same characters as .NET Char.IsLetter.
    if any(ch.isalpha() for ch in value):
        return None, DataWarning(
            PHONE_LEFT_OUT,
            f"{customer_label(customer)}: the phone number '{value}' contains letters, which "
            f"Business Central does not accept. {_NOT_SENT}",
        )
    return value, None


def address_changed(
    customer: Customer, sent: dict[str, Any], stored: tuple[str, str, str]
) -> DataWarning | None:
    """A warning when BC stored another (city, post code, country) than we sent: its Post
    Codes list overwrites them when it knows the post code (PostCode.Table.al
    ValidatePostCode). Letter case does not count (BC keeps its list's spelling)."""
    wanted = (sent.get("city", ""), sent.get("postalCode", ""), sent.get("country", ""))
    if all(str(w).casefold() == str(g).casefold() for w, g in zip(wanted, stored, strict=True)):
        return None

    def show(city: str, post_code: str, country: str) -> str:
        return ", ".join(p for p in (post_code, city, country) if p) or "(blank)"

    return DataWarning(
        ADDRESS_FROM_POST_CODES,
        f"{customer_label(customer)}: Moment's address {show(*wanted)} is stored in Business "
        f"Central as {show(*stored)}; Business Central took city or country from its Post "
        "Codes list. Check the post code in Moment or the Post Codes list in Business Central.",
    )


def customer_export(
    customer: Customer, *, local_currency: str, payment_terms: str | None
) -> CustomerExport:
    """``POST/PATCH customers`` body (bc-contract "Customers") without the values BC cannot
    take, and a warning for each value left out."""
    subject = f"customer {customer.number}"
    address = customer.invoice_address
    body: dict[str, Any] = {
        "number": bc_code(customer.number, NUMBER_MAX, "Customer number", subject),
        "displayName": clean(customer.name, CUSTOMER_LIMITS["displayName"]),
        "addressLine1": clean(address.line1, CUSTOMER_LIMITS["addressLine1"]),
        "addressLine2": clean(address.line2, CUSTOMER_LIMITS["addressLine2"]),
        "city": clean(address.city, CUSTOMER_LIMITS["city"]),
        "postalCode": clean(address.postal_code, CUSTOMER_LIMITS["postalCode"]),
        "country": address.country_code.upper(),
        "email": clean(customer.email, CUSTOMER_LIMITS["email"]),
        "website": clean(customer.website, CUSTOMER_LIMITS["website"]),
        "currencyCode": currency(customer.currency_code, local_currency),
    }
    if not body["displayName"]:
        raise Permanent("BC-VALIDATION", "The customer has no name.", subject=subject)
    warnings: list[DataWarning] = []
    for key, (value, warning) in (
        ("phoneNumber", phone_number(customer)),
        ("taxRegistrationNumber", vat_number(customer)),
    ):
        if value is not None:
            body[key] = value
        if warning is not None:
            warnings.append(warning)
    if payment_terms:
        body["paymentTermsId"] = payment_terms
    return CustomerExport(body, tuple(warnings))


def customer_payload(
    customer: Customer, *, local_currency: str, payment_terms: str | None
) -> dict[str, Any]:
    """``POST/PATCH customers`` body (bc-contract "Customers"); see :func:`customer_export`."""
    return customer_export(
        customer, local_currency=local_currency, payment_terms=payment_terms
    ).body


def dimension_value(project: Project) -> tuple[str, str]:
    """(code, name) of a project's dimension value: the number, and the name cut to 50."""
    subject = f"project {project.number}"
    code = bc_code(project.number, NUMBER_MAX, "Project number", subject)
    return code, clean(project.name, DIMENSION_VALUE_NAME_MAX) or code


def department_code(project: Project, source: str, tag_group: str | None, subject: str) -> str:
    """A line's department: the department object's external number, or the project's tag in
    the configured tag group (DESIGN §11)."""
    code: str | None
    if source == "tag_group":
        wanted = (tag_group or "").strip().casefold()
        code = next(
            (t.code for t in project.tags if t.group.strip().casefold() == wanted and t.code),
            None,
        )
        where = f"a tag in tag group '{tag_group}'"
    else:
        code = project.department.external_number if project.department else None
        where = "a department with an external number"
    if not code or not code.strip():
        raise Permanent(
            "BC-DEPARTMENT-MISSING",
            f"Project {project.number} has no department code: it needs {where} in Moment.",
            subject=subject,
        )
    return bc_code(code, NUMBER_MAX, "Department code", subject)


@dataclass(frozen=True)
class LineDims:
    """Dimension values wanted on one invoice line (by sequence)."""

    sequence: int
    values: tuple[tuple[str, str], ...]  # (dimension code, value code)


def invoice_payload(
    invoice: Invoice, *, customer_number: str, local_currency: str
) -> dict[str, Any]:
    """``POST salesInvoices`` body with the lines deep-inserted (bc-contract "Invoices")."""
    return _document_payload(
        invoice,
        "invoice",
        customer_number=customer_number,
        local_currency=local_currency,
        date_field="invoiceDate",
        extra={"customerPurchaseOrderReference": clean(invoice.your_reference, REFERENCE_MAX)},
        lines_field="salesInvoiceLines",
        line_body=line_payload,
    )


def credit_memo_payload(
    note: Invoice, *, customer_number: str, local_currency: str
) -> dict[str, Any]:
    """``POST salesCreditMemos`` body with the lines deep-inserted (bc-contract "Credit notes").

    The page (APIV2SalesCreditMemos.Page.al) names the document date ``creditMemoDate`` and has
    no ``customerPurchaseOrderReference``: Moment's "your reference" has nowhere to go. The
    header's ``invoiceId`` (the credited invoice) is added by the export once it is found.
    Amounts: see :func:`credit_line_payload`.
    """
    return _document_payload(
        note,
        "credit note",
        customer_number=customer_number,
        local_currency=local_currency,
        date_field="creditMemoDate",
        extra={},
        lines_field="salesCreditMemoLines",
        line_body=credit_line_payload,
    )


def _document_payload(
    doc: Invoice,
    noun: str,
    *,
    customer_number: str,
    local_currency: str,
    date_field: str,
    extra: Mapping[str, Any],
    lines_field: str,
    line_body: Callable[[InvoiceLine, int, str], dict[str, Any]],
) -> dict[str, Any]:
    """The body of a sales document: the header both pages share, ``extra`` fields, the lines."""
    subject = f"{noun} {doc.number}"
    return {
        "customerNumber": customer_number,
        # Code[35] in BC (SalesInvoiceEntityAggregate.Table.al, SalesCrMemoEntityBuffer.Table.al):
        # stored upper-cased, so it is sent and searched upper-cased (bc-api Corrections 8), or
        # "ab-12" would not be found again and would be posted twice.
        "externalDocumentNumber": bc_code(
            doc.number, EXTERNAL_DOCUMENT_MAX, f"{noun.capitalize()} number", subject
        ),
        date_field: doc.invoice_date.isoformat(),
        "postingDate": doc.invoice_date.isoformat(),
        "dueDate": doc.due_date.isoformat(),
        "currencyCode": currency(doc.currency_code, local_currency),
        **extra,
        lines_field: [
            line_body(line, (i + 1) * LINE_STEP, subject) for i, line in enumerate(doc.lines)
        ],
    }


def credit_line_payload(line: InvoiceLine, sequence: int, subject: str) -> dict[str, Any]:
    """A credit memo line whose amount is minus the Moment line's, so that the credit memo's
    total is minus the credit note's total, whatever signs Moment used.

    BC's credit memo carries a credit as positive amounts. The unit price is Moment's price
    without its sign and the quantity carries the sign: ``quantity' = -sign(price) * quantity``,
    ``unitPrice' = |price|`` (the discount percent stays), so ``quantity' * unitPrice' = -(quantity
    * price)``. A crediting line (negative quantity or negative price) gets a positive quantity;
    a charging line within a credit note (positive quantity and price, or both negative) gets a
    negative quantity and lowers the credit, as BC's own negative lines do. A line priced 0 keeps
    its quantity unsigned.
    """
    body = line_payload(line, sequence, subject)
    price, quantity = line.unit_price, line.quantity
    body["unitPrice"] = abs(price)
    # A line priced 0 has no amount to turn: its quantity is shown as a credited quantity.
    body["quantity"] = -quantity if price > 0 else quantity if price < 0 else abs(quantity)
    body["quantity"] += 0.0  # never -0.0
    return body


def line_payload(line: InvoiceLine, sequence: int, subject: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sequence": sequence,
        "lineType": "Account",
        "lineObjectNumber": bc_code(line.account_number, NUMBER_MAX, "Account number", subject),
        "description": clean(line.description, LINE_DESCRIPTION_MAX),
        "quantity": line.quantity,
        "unitPrice": line.unit_price,
        "discountPercent": line.discount_percent,
    }
    if line.vat_code:
        body["taxCode"] = bc_code(line.vat_code, TAX_CODE_MAX, "VAT code", subject)
    return body


def line_dimensions(
    invoice: Invoice,
    *,
    project_dimension: str | None,
    department_dimension: str | None,
    department_source: str | None,
    tag_group: str | None,
    subject: str | None = None,
) -> list[LineDims]:
    """Project and department dimension values per line that has a project."""
    subject = subject or f"invoice {invoice.number}"
    out: list[LineDims] = []
    for i, line in enumerate(invoice.lines):
        if line.project is None:
            continue
        values: list[tuple[str, str]] = []
        if project_dimension:
            values.append((project_dimension, dimension_value(line.project)[0]))
        if department_dimension:
            code = department_code(
                line.project, department_source or "department", tag_group, subject
            )
            values.append((department_dimension, code))
        if values:
            out.append(LineDims((i + 1) * LINE_STEP, tuple(values)))
    return out


def projects_of(invoice: Invoice) -> list[Project]:
    """The distinct projects on an invoice's lines, in line order."""
    seen: dict[str, Project] = {}
    for line in invoice.lines:
        if line.project is not None and line.project.number not in seen:
            seen[line.project.number] = line.project
    return list(seen.values())
