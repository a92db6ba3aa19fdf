"""Pure transforms from Moment snapshots to Business Central payloads (no I/O).

Free text is cleaned of control characters and cut to BC's field lengths (bc-api §4); an
identifier that BC cannot hold (a number or reference longer than its field) is an error,
because cutting it would change what it points to.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.errors import Permanent
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
    "taxRegistrationNumber": 50,
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


_DAYS = re.compile(r"^<?\s*(\d+)\s*[DdTt]\s*>?$")  # "30D", "<30D>", Swedish "30T" (dagar)


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


def customer_payload(
    customer: Customer, *, local_currency: str, payment_terms: str | None
) -> dict[str, Any]:
    """``POST/PATCH customers`` body (bc-contract "Customers")."""
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
        "phoneNumber": clean(customer.phone, CUSTOMER_LIMITS["phoneNumber"]),
        "website": clean(customer.website, CUSTOMER_LIMITS["website"]),
        "taxRegistrationNumber": clean(
            customer.vat_number or customer.organization_number,
            CUSTOMER_LIMITS["taxRegistrationNumber"],
        ),
        "currencyCode": currency(customer.currency_code, local_currency),
    }
    if not body["displayName"]:
        raise Permanent("BC-VALIDATION", "The customer has no name.", subject=subject)
    if payment_terms:
        body["paymentTermsId"] = payment_terms
    return body


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
    subject = f"invoice {invoice.number}"
    return {
        "customerNumber": customer_number,
        # Code[35] in BC (SalesInvoiceEntityAggregate.Table.al): stored upper-cased, so it is
        # sent and searched upper-cased (bc-api Corrections 8), or "ab-12" would not be found
        # again and would be posted twice.
        "externalDocumentNumber": bc_code(
            invoice.number, EXTERNAL_DOCUMENT_MAX, "Invoice number", subject
        ),
        "invoiceDate": invoice.invoice_date.isoformat(),
        "postingDate": invoice.invoice_date.isoformat(),
        "dueDate": invoice.due_date.isoformat(),
        "currencyCode": currency(invoice.currency_code, local_currency),
        "customerPurchaseOrderReference": clean(invoice.your_reference, REFERENCE_MAX),
        "salesInvoiceLines": [
            line_payload(line, (i + 1) * LINE_STEP, subject) for i, line in enumerate(invoice.lines)
        ],
    }


def credit_memo_payload(
    note: Invoice, *, customer_number: str, local_currency: str
) -> dict[str, Any]:
    """``POST salesCreditMemos`` body with the lines deep-inserted (bc-contract "Credit notes").

    The page (APIV2SalesCreditMemos.Page.al) names the document date ``creditMemoDate`` and has
    no ``customerPurchaseOrderReference``: Moment's "your reference" has nowhere to go. The
    header's ``invoiceId`` (the credited invoice) is added by the export once it is found.
    Amounts: see :func:`credit_line_payload`.
    """
    subject = f"credit note {note.number}"
    return {
        "customerNumber": customer_number,
        # Code[35] like the invoice's (SalesCrMemoEntityBuffer.Table.al): upper-cased.
        "externalDocumentNumber": bc_code(
            note.number, EXTERNAL_DOCUMENT_MAX, "Credit note number", subject
        ),
        "creditMemoDate": note.invoice_date.isoformat(),
        "postingDate": note.invoice_date.isoformat(),
        "dueDate": note.due_date.isoformat(),
        "currencyCode": currency(note.currency_code, local_currency),
        "salesCreditMemoLines": [
            credit_line_payload(line, (i + 1) * LINE_STEP, subject)
            for i, line in enumerate(note.lines)
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
