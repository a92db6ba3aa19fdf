"""Field specs of every entity the emulator serves: names, EDM types, max lengths, read-only flags.

Source of truth: bc-api.md §4 (API v2.0 tables) and bc-contract.md (ODataV4 page services).
``paymentTerms`` is not tabled in bc-api.md; its fields were checked against
[BCApps] ``APIV2PaymentTerms.Page.al`` (page 30023) and table 3 "Payment Terms"
(Code Code[10], Description Text[100], two DateFormula fields, "Discount %", a Boolean).

Values are kept in their JSON form (dates ``YYYY-MM-DD``, datetimes ``…T…:…:….mmmZ``, GUIDs in
lowercase), so rendering is a dict copy and ``$filter`` compares them directly.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BCError, bad_request, read_only, string_too_long, unknown_property

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = "0001-01-01"
EMPTY_DATETIME = "0001-01-01T00:00:00Z"

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(Z|[+-]\d{2}:\d{2})$"
)

# EDM type names used in messages.
EDM = {
    "guid": "Edm.Guid",
    "string": "Edm.String",
    "number": "Edm.Decimal",
    "int": "Edm.Int32",
    "int64": "Edm.Int64",
    "bool": "Edm.Boolean",
    "date": "Edm.Date",
    "datetime": "Edm.DateTimeOffset",
    "enum": "Edm.String",
}


def escape_enum(name: str) -> str:
    """OData identifier escaping of an enum member (bc-api §3).

    ``"G/L Account"`` → ``G_x002F_L_x0020_Account``.

    The blank member ``" "`` becomes ``"_x0020_"``.
    """
    out = []
    for ch in name or " ":
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        else:
            out.append(f"_x{ord(ch):04X}_")
    return "".join(out)


def unescape_enum(value: str) -> str:
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def odatav4_name(caption: str) -> str:
    """ODataV4 page-service field name from a BC caption (bc-api §1.3).

    Spaces, ``/`` and ``-`` become ``_``; dots and parentheses are dropped; ``'`` becomes
    ``_x0027_``; ``%`` becomes ``Percent``. E.g. "Gen. Bus. Posting Group" →
    ``Gen_Bus_Posting_Group``,
    "Country/Region Code" → ``Country_Region_Code``, "No." → ``No``.
    """
    s = caption.replace("%", "Percent").replace("'", "_x0027_")
    s = s.replace(".", "").replace("(", "").replace(")", "")
    s = re.sub(r"[ /\-]+", "_", s)
    s = re.sub(r"_+", "_", s)
    return s.strip("_")


def now_iso() -> str:
    return format_datetime(dt.datetime.now(dt.UTC))


def format_datetime(value: dt.datetime) -> str:
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> str | None:
    """Normalise an ISO-8601 datetime with zone to BC's UTC millisecond form, or None."""
    m = DATETIME_RE.match(text)
    if not m:
        return None
    frac = (m.group(7) or "0").ljust(6, "0")[:6]
    zone = m.group(8)
    try:
        tz = (
            dt.UTC
            if zone == "Z"
            else dt.timezone(
                (1 if zone[0] == "+" else -1)
                * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            )
        )
        value = dt.datetime(
            int(m.group(1)),
            int(m.group(2)),
            int(m.group(3)),
            int(m.group(4)),
            int(m.group(5)),
            int(m.group(6) or 0),
            int(frac),
            tzinfo=tz,
        )
    except ValueError:
        return None
    return format_datetime(value)


def valid_date(text: str) -> bool:
    if not DATE_RE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def norm_number(value: float) -> float | int:
    """BC decimals: at most 5 decimals; integral values are written without a fraction."""
    r = round(float(value), 5)
    return int(r) if r.is_integer() and abs(r) < 2**53 else r


@dataclass(frozen=True)
class Field:
    """One property of an entity type."""

    name: str
    type: str  # guid | string | number | int | int64 | bool | date | datetime | enum
    max_len: int | None = None
    ro: bool = False
    code: bool = False  # AL Code[n]: stored upper-case
    enum: tuple[str, ...] = ()  # escaped member names
    caption: str = ""  # BC caption (ODataV4 pages; also used in messages)

    def default(self) -> Any:
        if self.type == "guid":
            return EMPTY_GUID
        if self.type == "string":
            return ""
        if self.type in ("number", "int", "int64"):
            return 0
        if self.type == "bool":
            return False
        if self.type == "date":
            return EMPTY_DATE
        if self.type == "datetime":
            return EMPTY_DATETIME
        if self.type == "enum":
            return self.enum[0]
        raise AssertionError(self.type)


@dataclass(frozen=True)
class EntitySpec:
    """An entity type and how its set behaves."""

    type_name: str  # e.g. "customer" → messages say 'Microsoft.NAV.customer'
    entity_set: str
    fields: tuple[Field, ...]
    insert: bool = False
    modify: bool = False
    delete: bool = False
    navigations: tuple[str, ...] = ()
    deep_insert: tuple[str, ...] = ()
    qualified_prefix: str = "Microsoft.NAV."
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    @property
    def qualified(self) -> str:
        return self.qualified_prefix + self.type_name

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default() for f in self.fields}


def coerce(f: Field, value: Any) -> Any:
    """Convert one JSON body value to the stored form, raising BC's errors."""

    def bad() -> BCError:
        shown = (
            "null"
            if value is None
            else (str(value).lower() if isinstance(value, bool) else str(value))
        )
        return bad_request(
            f"Cannot convert the literal '{shown}' to the expected type '{EDM[f.type]}'."
        )

    t = f.type
    if t == "string":
        if not isinstance(value, str):
            raise bad()
        if f.max_len is not None and len(value) > f.max_len:
            raise string_too_long(value, f.max_len)
        return value.upper() if f.code else value
    if t == "guid":
        if not isinstance(value, str) or not GUID_RE.match(value.strip("{}")):
            raise bad()
        return value.strip("{}").lower()
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return norm_number(value)
    if t in ("int", "int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if t == "date":
        if not isinstance(value, str) or not valid_date(value):
            raise bad()
        return value
    if t == "datetime":
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is None:
            raise bad()
        return parsed
    if t == "enum":
        if not isinstance(value, str) or value not in f.enum:
            raise bad_request(f"The string '{value}' is not a valid enumeration type constant.")
        return value
    raise AssertionError(t)


def parse_body(
    spec: EntitySpec, body: Any, *, allow_ro: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a POST/PATCH body: unknown properties, read-only controls, types, lengths.

    Returns ``(values, navigation_payloads)``. ``@odata.*`` annotations are ignored.
    """
    if not isinstance(body, dict):
        raise bad_request("Invalid Request Body")
    values: dict[str, Any] = {}
    navs: dict[str, Any] = {}
    for key, raw in body.items():
        if key.startswith("@odata.") or "@odata." in key:
            continue
        f = spec.by_name.get(key)
        if f is None:
            if key in spec.deep_insert:
                navs[key] = raw
                continue
            raise unknown_property(key, spec.qualified)
        if f.ro and key not in allow_ro:
            raise read_only(key)
        values[key] = coerce(f, raw)
    return values, navs


# ---- enum member lists (escaped) ------------------------------------------------------------

BLANK = "_x0020_"
CUSTOMER_BLOCKED = (BLANK, "Ship", "Invoice", "All")
CONTACT_TYPE = ("Company", "Person")
DOC_STATUS = (BLANK, "Draft", "In_x0020_Review", "Open", "Paid", "Canceled", "Corrective")
LINE_TYPE = (
    "Comment",
    "Account",
    "Item",
    "Resource",
    "Fixed_x0020_Asset",
    "Charge",
    "Allocation_x0020_Account",
)
ACCOUNT_CATEGORY = (
    BLANK,
    "Assets",
    "Liabilities",
    "Equity",
    "Income",
    "Cost_x0020_of_x0020_Goods_x0020_Sold",
    "Expense",
)
ACCOUNT_TYPE = ("Posting", "Heading", "Total", "Begin_x002D_Total", "End_x002D_Total")
CONSOLIDATION_METHOD = tuple(
    escape_enum(n)
    for n in (
        "Average Rate (Manual)",
        "Closing Rate",
        "Historical Rate",
        "Composite Rate",
        "Equity Rate",
    )
)
# 72 members in BC; the ones this emulator can produce.
DIM_PARENT_TYPE = (
    BLANK,
    "Journal_x0020_Line",
    "Sales_x0020_Order",
    "Sales_x0020_Order_x0020_Line",
    "Sales_x0020_Quote",
    "Sales_x0020_Quote_x0020_Line",
    "Sales_x0020_Credit_x0020_Memo",
    "Sales_x0020_Credit_x0020_Memo_x0020_Line",
    "Sales_x0020_Invoice",
    "Sales_x0020_Invoice_x0020_Line",
    "Purchase_x0020_Invoice",
    "Purchase_x0020_Invoice_x0020_Line",
    "General_x0020_Ledger_x0020_Entry",
)
DIM_VALUE_TYPE = tuple(
    escape_enum(n) for n in ("Standard", "Heading", "Total", "Begin-Total", "End-Total")
)


def S(name: str, n: int | None = None, *, ro: bool = False, code: bool = False) -> Field:
    return Field(name, "string", n, ro=ro, code=code)


def G(name: str, *, ro: bool = False) -> Field:
    return Field(name, "guid", ro=ro)


def N(name: str, *, ro: bool = False) -> Field:
    return Field(name, "number", ro=ro)


def B(name: str, *, ro: bool = False) -> Field:
    return Field(name, "bool", ro=ro)


def D(name: str, *, ro: bool = False) -> Field:
    return Field(name, "date", ro=ro)


def E(name: str, members: tuple[str, ...], *, ro: bool = False) -> Field:
    return Field(name, "enum", ro=ro, enum=members)


def ID() -> Field:
    return Field("id", "guid", ro=True)


def LMDT() -> Field:
    return Field("lastModifiedDateTime", "datetime", ro=True)


# ---- API v2.0 -------------------------------------------------------------------------------

COMPANY = EntitySpec(
    "company",
    "companies",
    (
        ID(),
        S("systemVersion", ro=True),
        Field("timestamp", "int64", ro=True),
        S("name", 30, ro=True),
        S("displayName", 250, ro=True),
        S("businessProfileId", 250, ro=True),
        Field("systemCreatedAt", "datetime", ro=True),
        G("systemCreatedBy", ro=True),
        Field("systemModifiedAt", "datetime", ro=True),
        G("systemModifiedBy", ro=True),
    ),
)

CUSTOMER = EntitySpec(
    "customer",
    "customers",
    (
        ID(),
        S("number", 20, code=True),
        S("displayName", 100),
        E("type", CONTACT_TYPE),
        S("addressLine1", 100),
        S("addressLine2", 50),
        S("city", 30),
        S("state", 30),
        S("country", 10, code=True),
        S("postalCode", 20, code=True),
        S("phoneNumber", 30),
        S("email", 80),
        S("website", 255),
        S("salespersonCode", 20, code=True),
        N("balanceDue", ro=True),
        N("creditLimit"),
        B("taxLiable"),
        G("taxAreaId"),
        S("taxAreaDisplayName", ro=True),
        S("taxRegistrationNumber", 50),
        G("currencyId"),
        S("currencyCode", 10, code=True),
        G("paymentTermsId"),
        G("shipmentMethodId"),
        G("paymentMethodId"),
        E("blocked", CUSTOMER_BLOCKED),
        LMDT(),
    ),
    insert=True,
    modify=True,
    delete=True,
)

PAYMENT_TERM = EntitySpec(
    "paymentTerm",
    "paymentTerms",
    (
        ID(),
        S("code", 10, code=True),
        S("displayName", 100),
        S("dueDateCalculation", 32),
        S("discountDateCalculation", 32),
        N("discountPercent"),
        B("calculateDiscountOnCreditMemos"),
        LMDT(),
    ),
    insert=True,
    modify=True,
    delete=True,
)

DIMENSION = EntitySpec(
    "dimension",
    "dimensions",
    (
        ID(),
        S("code", 20, code=True),
        S("displayName", 30),
        S("consolidationCode", 20, code=True),
        LMDT(),
    ),
    navigations=("dimensionValues",),
)

DIMENSION_VALUE = EntitySpec(
    "dimensionValue",
    "dimensionValues",
    (
        ID(),
        S("code", 20, code=True),
        G("dimensionId"),
        S("displayName", 50),
        S("consolidationCode", 20, code=True),
        LMDT(),
    ),
)

DIMENSION_SET_LINE = EntitySpec(
    "dimensionSetLine",
    "dimensionSetLines",
    (
        Field("id", "guid"),  # the Dimension's id; writable on POST (bc-api §4.9)
        S("code", 20, code=True),
        S("consolidationCode", 20, ro=True, code=True),
        G("parentId", ro=True),
        E("parentType", DIM_PARENT_TYPE, ro=True),
        S("displayName", 30),
        G("valueId"),
        S("valueCode", 20, code=True),
        S("valueConsolidationCode", 20, ro=True, code=True),
        S("valueDisplayName", 50),
    ),
    insert=True,
    modify=True,
    delete=True,
)

ACCOUNT = EntitySpec(
    "account",
    "accounts",
    (
        ID(),
        S("number", 20, code=True),
        S("displayName", 100),
        E("category", ACCOUNT_CATEGORY),
        S("subCategory", 80),
        B("blocked"),
        E("accountType", ACCOUNT_TYPE),
        B("directPosting"),
        N("netChange", ro=True),
        E("consolidationTranslationMethod", CONSOLIDATION_METHOD),
        S("consolidationDebitAccount", 20, code=True),
        S("consolidationCreditAccount", 20, code=True),
        B("excludeFromConsolidation"),
        LMDT(),
    ),
)

GL_SETUP = EntitySpec(
    "generalLedgerSetup",
    "generalLedgerSetup",
    (
        ID(),
        D("allowPostingFrom"),
        D("allowPostingTo"),
        S("additionalReportingCurrency", 10, code=True),
        S("localCurrencyCode", 10, code=True),
        S("localCurrencySymbol", 10),
        LMDT(),
        B("allowQueryFromConsolidation"),
        *(S(f"shortcutDimension{i}Code", 20, code=True) for i in range(1, 9)),
    ),
)

COMPANY_INFORMATION = EntitySpec(
    "companyInformation",
    "companyInformation",
    (
        ID(),
        S("displayName", 100),
        S("addressLine1", 100),
        S("addressLine2", 50),
        S("city", 30),
        S("state", 30),
        S("country", 10, code=True),
        S("postalCode", 20, code=True),
        S("phoneNumber", 30),
        S("faxNumber", 30),
        S("email", 80),
        S("website", 255),
        S("taxRegistrationNumber", 20),
        S("currencyCode", 10, ro=True, code=True),
        D("currentFiscalYearStartDate", ro=True),
        S("industry", 30),
        S("picture", ro=True),
        S("experience", 30),
        LMDT(),
    ),
    modify=True,
)

_ADDR = (
    ("AddressLine1", 100),
    ("AddressLine2", 50),
    ("City", 30),
    ("Country", 10),
    ("State", 30),
    ("PostCode", 20),
)


def _address(prefix: str, *, ro: bool = False) -> tuple[Field, ...]:
    return tuple(
        S(prefix + suffix, n, ro=ro, code=suffix in ("Country", "PostCode")) for suffix, n in _ADDR
    )


SALES_INVOICE = EntitySpec(
    "salesInvoice",
    "salesInvoices",
    (
        ID(),
        S("number", 20, ro=True, code=True),
        S("externalDocumentNumber", 35, code=True),
        D("invoiceDate"),
        D("postingDate"),
        D("dueDate"),
        D("promisedPayDate"),
        S("customerPurchaseOrderReference", 35),
        G("customerId"),
        S("customerNumber", 20, code=True),
        S("customerName", 100, ro=True),
        S("billToName", 100, ro=True),
        G("billToCustomerId"),
        S("billToCustomerNumber", 20, code=True),
        S("shipToName", 100),
        S("shipToContact", 100),
        *_address("sellTo"),
        *_address("billTo", ro=True),
        *_address("shipTo"),
        G("currencyId"),
        S("currencyCode", 10, code=True),
        S("shortcutDimension1Code", 20, code=True),
        S("shortcutDimension2Code", 20, code=True),
        G("orderId", ro=True),
        S("orderNumber", 20, ro=True, code=True),
        G("paymentTermsId"),
        G("shipmentMethodId"),
        S("salesperson", 20, code=True),
        G("disputeStatusId"),
        S("disputeStatus", 10, code=True),
        B("pricesIncludeTax", ro=True),
        N("remainingAmount", ro=True),
        N("discountAmount"),
        B("discountAppliedBeforeTax", ro=True),
        N("totalAmountExcludingTax", ro=True),
        N("totalTaxAmount", ro=True),
        N("totalAmountIncludingTax", ro=True),
        E("status", DOC_STATUS, ro=True),
        LMDT(),
        S("phoneNumber", 30),
        S("email", 80),
    ),
    insert=True,
    modify=True,
    delete=True,
    navigations=("salesInvoiceLines", "dimensionSetLines"),
    deep_insert=("salesInvoiceLines",),
)

_LINE_COMMON_HEAD = (
    ID(),
    G("documentId"),
    Field("sequence", "int"),
    G("itemId"),
    G("accountId"),
    E("lineType", LINE_TYPE),
    S("lineObjectNumber", 20, code=True),
    S("description", 100),
    S("description2", 50),
    G("unitOfMeasureId"),
    S("unitOfMeasureCode", 10, code=True),
)

SALES_INVOICE_LINE = EntitySpec(
    "salesInvoiceLine",
    "salesInvoiceLines",
    (
        *_LINE_COMMON_HEAD,
        N("quantity"),
        N("unitPrice"),
        N("discountAmount"),
        N("discountPercent"),
        B("discountAppliedBeforeTax", ro=True),
        N("amountExcludingTax", ro=True),
        S("taxCode", 50, code=True),
        N("taxPercent", ro=True),
        N("totalTaxAmount", ro=True),
        N("amountIncludingTax", ro=True),
        N("invoiceDiscountAllocation", ro=True),
        N("netAmount", ro=True),
        N("netTaxAmount", ro=True),
        N("netAmountIncludingTax", ro=True),
        D("shipmentDate"),
        G("itemVariantId"),
        G("locationId"),
    ),
    insert=True,
    modify=True,
    delete=True,
    navigations=("dimensionSetLines",),
    deep_insert=("dimensionSetLines",),
)

# [BCApps] APIV2SalesCreditMemos.Page.al (page 30038, table "Sales Cr. Memo Entity Buffer"): the
# fields in control order. Unlike salesInvoices: ``creditMemoDate`` (the Document Date) instead of
# ``invoiceDate``; no ``customerPurchaseOrderReference``, ship-to, order, dispute or
# ``remainingAmount`` fields; the bill-to address is editable; ``invoiceId``/``invoiceNumber``
# (the Applies-to Doc. No.) apply it to a posted invoice; ``customerReturnReasonId``.
SALES_CREDIT_MEMO = EntitySpec(
    "salesCreditMemo",
    "salesCreditMemos",
    (
        ID(),
        S("number", 20, ro=True, code=True),
        S("externalDocumentNumber", 35, code=True),
        D("creditMemoDate"),
        D("postingDate"),
        D("dueDate"),
        G("customerId"),
        S("customerNumber", 20, code=True),
        S("customerName", 100, ro=True),
        S("billToName", 100, ro=True),
        G("billToCustomerId"),
        S("billToCustomerNumber", 20, code=True),
        *_address("sellTo"),
        *_address("billTo"),
        S("shortcutDimension1Code", 20, code=True),
        S("shortcutDimension2Code", 20, code=True),
        G("currencyId"),
        S("currencyCode", 10, code=True),
        G("paymentTermsId"),
        G("shipmentMethodId"),
        S("salesperson", 20, code=True),
        B("pricesIncludeTax", ro=True),
        N("discountAmount"),
        B("discountAppliedBeforeTax", ro=True),
        N("totalAmountExcludingTax", ro=True),
        N("totalTaxAmount", ro=True),
        N("totalAmountIncludingTax", ro=True),
        E("status", DOC_STATUS, ro=True),
        LMDT(),
        G("invoiceId"),
        S("invoiceNumber", 20, code=True),
        S("phoneNumber", 30),
        S("email", 80),
        G("customerReturnReasonId"),
    ),
    insert=True,
    modify=True,
    delete=True,
    navigations=("salesCreditMemoLines", "dimensionSetLines"),
    deep_insert=("salesCreditMemoLines",),
)

# [BCApps] APIV2SalesCreditMemLines.Page.al (page 30046, temp "Sales Invoice Line Aggregate"):
# the fields of salesInvoiceLines (taxCode cut to 20 the same way), unitPrice before quantity.
SALES_CREDIT_MEMO_LINE = EntitySpec(
    "salesCreditMemoLine",
    "salesCreditMemoLines",
    (
        *_LINE_COMMON_HEAD,
        N("unitPrice"),
        N("quantity"),
        *SALES_INVOICE_LINE.fields[len(_LINE_COMMON_HEAD) + 2 :],
    ),
    insert=True,
    modify=True,
    delete=True,
    navigations=("dimensionSetLines",),
    deep_insert=("dimensionSetLines",),
)

PURCHASE_INVOICE = EntitySpec(
    "purchaseInvoice",
    "purchaseInvoices",
    (
        ID(),
        S("number", 20, ro=True, code=True),
        D("postingDate"),
        D("invoiceDate"),
        D("dueDate"),
        S("vendorInvoiceNumber", 35),
        G("vendorId"),
        S("vendorNumber", 20, code=True),
        S("vendorName", 100, ro=True),
        S("payToName", 100, ro=True),
        S("payToContact", 100, ro=True),
        G("payToVendorId"),
        S("payToVendorNumber", 20, code=True),
        S("shipToName", 100),
        S("shipToContact", 100),
        *_address("buyFrom"),
        *_address("shipTo"),
        *_address("payTo", ro=True),
        S("shortcutDimension1Code", 20, code=True),
        S("shortcutDimension2Code", 20, code=True),
        G("currencyId"),
        S("currencyCode", 10, code=True),
        G("orderId", ro=True),
        S("orderNumber", 20, ro=True, code=True),
        S("purchaser", 20, code=True),
        B("pricesIncludeTax"),
        N("discountAmount"),
        B("discountAppliedBeforeTax", ro=True),
        N("totalAmountExcludingTax", ro=True),
        N("totalTaxAmount", ro=True),
        N("totalAmountIncludingTax", ro=True),
        E("status", DOC_STATUS, ro=True),
        LMDT(),
    ),
    navigations=("purchaseInvoiceLines", "dimensionSetLines"),
)

PURCHASE_INVOICE_LINE = EntitySpec(
    "purchaseInvoiceLine",
    "purchaseInvoiceLines",
    (
        *_LINE_COMMON_HEAD,
        N("unitCost"),
        N("quantity"),
        N("discountAmount"),
        N("discountPercent"),
        B("discountAppliedBeforeTax", ro=True),
        N("amountExcludingTax"),
        S("taxCode", 50, code=True),
        N("taxPercent", ro=True),
        N("totalTaxAmount", ro=True),
        N("amountIncludingTax"),
        N("invoiceDiscountAllocation"),
        N("netAmount"),
        N("netTaxAmount"),
        N("netAmountIncludingTax"),
        D("expectedReceiptDate"),
        G("itemVariantId"),
        G("locationId"),
    ),
    navigations=("dimensionSetLines",),
)

API_SPECS: dict[str, EntitySpec] = {
    s.entity_set: s
    for s in (
        COMPANY,
        CUSTOMER,
        PAYMENT_TERM,
        DIMENSION,
        DIMENSION_VALUE,
        DIMENSION_SET_LINE,
        ACCOUNT,
        GL_SETUP,
        COMPANY_INFORMATION,
        SALES_INVOICE,
        SALES_INVOICE_LINE,
        SALES_CREDIT_MEMO,
        SALES_CREDIT_MEMO_LINE,
        PURCHASE_INVOICE,
        PURCHASE_INVOICE_LINE,
    )
}

# ---- ODataV4 page web services (bc-contract.md) -----------------------------------------------


def V(
    caption: str,
    type_: str = "string",
    n: int | None = None,
    *,
    ro: bool = False,
    code: bool = False,
    enum: tuple[str, ...] = (),
) -> Field:
    return Field(odatav4_name(caption), type_, n, ro=ro, code=code, enum=enum, caption=caption)


V4_DIMENSION_VALUES = EntitySpec(
    "DimensionValues",
    "DimensionValues",
    (
        V("Dimension Code", n=20, code=True),
        V("Code", n=20, code=True),
        V("Name", n=50),
        V("Dimension Value Type", "enum", enum=DIM_VALUE_TYPE),
        V("Totaling", n=250),
        V("Blocked", "bool"),
        V("Consolidation Code", n=20, code=True),
    ),
    insert=True,
    modify=True,
    qualified_prefix="NAV.",
)

V4_CUSTOMER_CARD = EntitySpec(
    "CustomerCard",
    "CustomerCard",
    (
        V("No.", n=20, code=True),
        V("Name", n=100),
        V("Address", n=100),
        V("Address 2", n=50),
        V("Post Code", n=20, code=True),
        V("City", n=30),
        V("Country/Region Code", n=10, code=True),
        V("Phone No.", n=30),
        V("E-Mail", n=80),
        V("VAT Registration No.", n=20),  # the table field, Text[20] (Customer.Table.al)
        V("Blocked", "enum", enum=CUSTOMER_BLOCKED),
        V("Currency Code", n=10, code=True),
        V("Payment Terms Code", n=10, code=True),
        V("Gen. Bus. Posting Group", n=20, code=True),
        V("VAT Bus. Posting Group", n=20, code=True),
        V("Customer Posting Group", n=20, code=True),
        V("Balance (LCY)", "number", ro=True),
    ),
    modify=True,
    qualified_prefix="NAV.",
)

V4_GEN_BUS_POSTING_GROUPS = EntitySpec(
    "GenBusinessPostingGroups",
    "GenBusinessPostingGroups",
    (
        V("Code", n=20, code=True),
        V("Description", n=100),
        V("Def. VAT Bus. Posting Group", n=20, code=True),
        V("Auto Insert Default", "bool"),
    ),
    qualified_prefix="NAV.",
)

V4_CUSTOMER_POSTING_GROUPS = EntitySpec(
    "CustomerPostingGroups",
    "CustomerPostingGroups",
    (
        V("Code", n=20, code=True),
        V("Description", n=100),
        V("Receivables Account", n=20, code=True),
    ),
    qualified_prefix="NAV.",
)
