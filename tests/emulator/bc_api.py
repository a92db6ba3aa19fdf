"""API v2.0: ``/v2.0/{tenant}/{environment}/api/v2.0/...`` (bc-api §1.1, §3-§5).

Transport-neutral and synchronous: :func:`handle_api` takes an :class:`ApiRequest` and returns a
:class:`Reply`, so the HTTP layer and ``$batch`` share every rule. Each request runs in one
transaction (rolled back on any error), as BC does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from . import customer_rules as rules
from . import documents as docs
from . import payments
from .entities import (
    ACCOUNT,
    COMPANY,
    COMPANY_INFORMATION,
    CUSTOMER,
    DIMENSION,
    DIMENSION_SET_LINE,
    DIMENSION_VALUE,
    EMPTY_GUID,
    GL_SETUP,
    GUID_RE,
    PAYMENT_TERM,
    PURCHASE_INVOICE,
    PURCHASE_INVOICE_LINE,
    SALES_CREDIT_MEMO,
    SALES_CREDIT_MEMO_LINE,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    EntitySpec,
    parse_body,
)
from .errors import (
    BCError,
    Reply,
    already_exists,
    bad_request,
    dialog,
    key_not_found,
    method_not_allowed,
    not_implemented,
    query_error,
    resource_not_found,
)
from .languages import format_formula, parse_formula
from .odata_filter import Filter, compile_filter
from .odata_query import ExpandItem, QueryOptions, parse_options
from .store import Company, Environment, Row, Table, Tenant, World

JSON_CT = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"


@dataclass
class ApiRequest:
    """One OData call, decoded: from HTTP or from a ``$batch`` operation."""

    method: str
    segments: list[str]  # percent-decoded path segments after the service root
    pairs: list[tuple[str, str]]  # decoded query pairs, in order
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    link_base: str = ""  # absolute URL of this path (no query): base of @odata.nextLink

    def json(self) -> Any:
        if not self.body.strip():
            raise bad_request("Invalid Request Body")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("Invalid Request Body") from None

    def prefer(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.headers.get("prefer", "").split(","):
            if part.strip():
                k, _, v = part.strip().partition("=")
                out[k.strip().lower()] = v.strip()
        return out


@dataclass
class ApiCtx:
    world: World
    tenant: Tenant
    env: Environment
    root: str  # absolute URL of the service root (…/api/v2.0 or …/ODataV4)
    max_page_size: int = 20000


_SEGMENT = re.compile(r"^([^()]*)(?:\((.*)\))?$", re.S)


def split_segment(seg: str) -> tuple[str, str | None]:
    m = _SEGMENT.match(seg)
    if m is None:
        raise query_error("Bad Request - Error in query syntax.")
    return m.group(1), m.group(2)


def guid_key(key: str) -> str:
    k = key.strip()
    if k.lower().startswith("id="):
        k = k[3:]
    if not GUID_RE.match(k):
        raise query_error("Bad Request - Error in query syntax.")
    return k.lower()


# ---- collections --------------------------------------------------------------------------------


class Coll:
    """An entity set (possibly scoped under a parent) and the verbs it allows."""

    spec: EntitySpec
    label: str  # BC table caption, used in messages

    def rows(self) -> list[Row]:
        raise NotImplementedError

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        """Rows with ``name == value`` via an index, or None when there is none."""
        return None

    def check_list(self, flt: Filter | None) -> None:
        """Hook: refuse listing without a required filter (lines)."""

    def lookup(self, key: str) -> Row | None:
        raise NotImplementedError

    def render(self, row: Row) -> dict[str, Any]:
        d = row.data
        return {f.name: d[f.name] for f in self.spec.fields}

    def navigate(self, row: Row, name: str) -> Coll:
        raise resource_not_found(name)

    def create(self, body: Any) -> Row:
        raise method_not_allowed("POST", self.spec.entity_set)

    def modify(self, row: Row, body: Any) -> None:
        raise method_not_allowed("PATCH", self.spec.entity_set)

    def remove(self, row: Row) -> None:
        raise method_not_allowed("DELETE", self.spec.entity_set)

    def act(self, row: Row, action: str) -> None:
        raise resource_not_found(f"Microsoft.NAV.{action}")

    def key_error(self, key: str) -> BCError:
        return key_not_found(self.label, key)


class TableColl(Coll):
    def __init__(self, company: Company, table: Table, spec: EntitySpec, label: str) -> None:
        self.company = company
        self.table = table
        self.spec = spec
        self.label = label

    def rows(self) -> list[Row]:
        return list(self.table.rows.values())

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        if name == "id":
            row = self.table.get(value) if isinstance(value, str) else None
            return [] if row is None else [row]
        if self.table.indexed(name):
            return sorted(self.table.find_all(name, value), key=lambda r: r.seq)
        return None

    def lookup(self, key: str) -> Row | None:
        return self.table.get(guid_key(key))

    def modify(self, row: Row, body: Any) -> None:
        if not self.spec.modify:
            raise method_not_allowed("PATCH", self.spec.entity_set)
        values, navs = parse_body(self.spec, body)
        if navs:
            raise bad_request("Deep update is not supported.")
        self.table.update(row, values)


class CompaniesColl(Coll):
    spec = COMPANY
    label = "Company"

    def __init__(self, env: Environment) -> None:
        self.env = env

    def _row(self, c: Company, seq: int) -> Row:
        data = {
            "id": c.id,
            "systemVersion": "29.0.41870.0",
            "timestamp": seq,
            "name": c.name,
            "displayName": c.display_name,
            "businessProfileId": c.business_profile_id,
            "systemCreatedAt": c.created_at,
            "systemCreatedBy": EMPTY_GUID,
            "systemModifiedAt": c.modified_at,
            "systemModifiedBy": EMPTY_GUID,
        }
        return Row(c.id, data, c.etag, seq)

    def rows(self) -> list[Row]:
        return [self._row(c, i) for i, c in enumerate(self.env.companies.values(), 1)]

    def lookup(self, key: str) -> Row | None:
        c = self.env.companies.get(guid_key(key))
        return None if c is None else self._row(c, 0)

    def key_error(self, key: str) -> BCError:
        return company_not_found(key)


def company_not_found(ident: str) -> BCError:
    """UNCONFIRMED (bc-api §5.1 lists the code only): 404 ``Internal_CompanyNotFound``."""
    return BCError(404, "Internal_CompanyNotFound", f"The company '{ident}' does not exist.")


class CustomersColl(TableColl):
    def __init__(self, company: Company) -> None:
        super().__init__(company, company.customers, CUSTOMER, "Customer")

    def render(self, row: Row) -> dict[str, Any]:
        out = super().render(row)
        out["currencyCode"] = out["currencyCode"] or self.company.currency
        # VAT countries: "Tax Area ID" is the VAT Bus. Posting Group's SystemId
        # (Customer.Table.al UpdateTaxAreaId) and its display name the group's description.
        code = row.data.get("_vatBusPostingGroup", "")
        group = self.company.vat_bus_groups.find("code", code) if code else None
        out["taxAreaId"] = group.id if group else EMPTY_GUID
        out["taxAreaDisplayName"] = group.data.get("description", "") if group else ""
        return out

    def _check(self, values: dict[str, Any]) -> None:
        if "paymentTermsId" in values:
            docs.payment_terms_by_id(self.company, values["paymentTermsId"])
        for key, what in (
            ("shipmentMethodId", "Shipment Method"),
            ("paymentMethodId", "Payment Method"),
        ):
            if values.get(key, EMPTY_GUID) != EMPTY_GUID:
                # not modelled: no such records exist in the emulator ([BCApps] texts)
                raise dialog(f'The "{key}" does not match to a {what}.')
        docs.check_currency(self.company, values)

    def create(self, body: Any) -> Row:
        values, _ = parse_body(self.spec, body)
        if not values.get("displayName"):
            raise dialog('A "displayName" must be provided.')
        self._check(values)
        number = values.get("number")
        if number and self.table.find("number", number) is not None:
            raise already_exists("Customer", f"No.='{number}'")
        data = self.spec.defaults()
        data.update(_genBusPostingGroup="", _customerPostingGroup="", _vatBusPostingGroup="")
        # DelayedInsert: the fields are validated on the new record, xRec is blank.
        rules.apply(self.company, data, dict(data), values, rules.API_ORDER)
        if not number:
            number = self.company.next_number("customer")
            while self.table.find("number", number) is not None:
                number = self.company.next_number("customer")
        data["number"] = number
        tmpl = self.company.template_for(data["country"])
        if tmpl is not None:  # "Config. Tmpl. Selection Rules" by country (bc-api §4.2)
            data.update(tmpl)
        return self.table.insert(data)

    def modify(self, row: Row, body: Any) -> None:
        values, _ = parse_body(self.spec, body)
        if "displayName" in values and not values["displayName"]:
            raise dialog('The blank "displayName" is not allowed.')
        self._check(values)
        new_no = values.get("number")
        old_no = row.data["number"]
        if new_no is not None and new_no != old_no:
            if not new_no:
                raise dialog('The blank "number" is not allowed.')  # approximated
            if self.table.find("number", new_no) is not None:
                raise already_exists("Customer", f"No.='{new_no}'")
        rec = dict(row.data)
        rules.apply(self.company, rec, row.data, values, rules.API_ORDER)
        self.table.update(row, {k: v for k, v in rec.items() if row.data.get(k) != v})
        if new_no is not None and new_no != old_no:  # rename cascades to documents
            for table in (self.company.sales_invoices, self.company.sales_credit_memos):
                for inv in table.find_all("customerNumber", old_no):
                    table.update(inv, {"customerNumber": new_no}, touch=False)

    def remove(self, row: Row) -> None:
        self.table.delete(row)


class PaymentTermsColl(TableColl):
    """Payment terms; the two DateFormula fields are shown and read in the BC user's language
    (languages.py: the stricter reading, whatever the request's Accept-Language)."""

    FORMULAS = ("dueDateCalculation", "discountDateCalculation")

    def __init__(self, company: Company) -> None:
        super().__init__(company, company.payment_terms, PAYMENT_TERM, "Payment Terms")

    def render(self, row: Row) -> dict[str, Any]:
        out = super().render(row)
        for k in self.FORMULAS:
            out[k] = format_formula(out[k], self.company.language)
        return out

    def _check(self, values: dict[str, Any]) -> None:
        for k in self.FORMULAS:
            if k not in values:
                continue
            stored = parse_formula(values[k], self.company.language)
            if stored is None or not docs.valid_date_formula(stored):
                raise BCError(
                    400,
                    "Application_EvaluateException",
                    f'The value "{values[k]}" can\'t be evaluated into type DateFormula.',
                )
            values[k] = stored

    def create(self, body: Any) -> Row:
        values, _ = parse_body(self.spec, body)
        code = values.get("code", "")
        if not code:
            raise BCError(
                400,
                "Application_FieldValidationException",
                "Code must have a value in Payment Terms: Code=. It cannot be zero or empty.",
            )
        if self.table.find("code", code) is not None:
            raise already_exists("Payment Terms", f"Code='{code}'")
        self._check(values)
        data = self.spec.defaults()
        data.update(values)
        return self.table.insert(data)

    def modify(self, row: Row, body: Any) -> None:
        values, _ = parse_body(self.spec, body)
        self._check(values)
        code = values.get("code")
        if (
            code is not None
            and code != row.data["code"]
            and self.table.find("code", code) is not None
        ):
            raise already_exists("Payment Terms", f"Code='{code}'")
        self.table.update(row, values)

    def remove(self, row: Row) -> None:
        self.table.delete(row)


class DimensionsColl(TableColl):
    def __init__(self, company: Company) -> None:
        super().__init__(company, company.dimensions, DIMENSION, "Dimension")

    def navigate(self, row: Row, name: str) -> Coll:
        if name == "dimensionValues":
            return DimensionValuesColl(self.company, row.id)
        raise resource_not_found(name)


class DimensionValuesColl(TableColl):
    def __init__(self, company: Company, dimension_id: str | None = None) -> None:
        super().__init__(company, company.dimension_values, DIMENSION_VALUE, "Dimension Value")
        self.dimension_id = dimension_id

    def rows(self) -> list[Row]:
        if self.dimension_id is None:
            return super().rows()
        return sorted(self.table.find_all("dimensionId", self.dimension_id), key=lambda r: r.seq)

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        found = super().rows_eq(name, value)
        if found is None or self.dimension_id is None:
            return found
        return [r for r in found if r.data["dimensionId"] == self.dimension_id]

    def lookup(self, key: str) -> Row | None:
        row = super().lookup(key)
        if (
            row is not None
            and self.dimension_id is not None
            and row.data["dimensionId"] != self.dimension_id
        ):
            return None
        return row


class SingletonColl(TableColl):
    """generalLedgerSetup / companyInformation: a collection with one row."""


class SalesInvoicesColl(TableColl):
    def __init__(self, company: Company) -> None:
        super().__init__(
            company, company.sales_invoices, SALES_INVOICE, "Sales Invoice Entity Aggregate"
        )

    def render(self, row: Row) -> dict[str, Any]:
        out = super().render(row)
        out["currencyCode"] = out["currencyCode"] or self.company.currency
        # Computed when read, like APIV2SalesInvoices.Page.al GetRemainingAmount().
        out["remainingAmount"] = payments.remaining_amount(self.company, row)
        return out

    def create(self, body: Any) -> Row:
        values, navs = parse_body(self.spec, body)
        return docs.create_sales_invoice(self.company, values, navs.get("salesInvoiceLines"))

    def modify(self, row: Row, body: Any) -> None:
        values, navs = parse_body(self.spec, body)
        if navs:
            raise bad_request("Deep update is not supported.")
        docs.update_sales_invoice(self.company, row, values)

    def remove(self, row: Row) -> None:
        if row.data["_posted"]:
            raise dialog(docs.POSTED)
        for line in docs.lines_of(self.company, row.id, sales=True):
            docs.delete_line(self.company, row, line, sales=True)
        for entry in self.company.dim_set.find_all("parentId", row.id):
            self.company.dim_set.delete(entry)
        self.table.delete(row)

    def navigate(self, row: Row, name: str) -> Coll:
        if name == "salesInvoiceLines":
            return LinesColl(self.company, row, sales=True)
        if name == "dimensionSetLines":
            return DimSetColl(self.company, row, "Sales_x0020_Invoice", row)
        raise resource_not_found(name)

    def act(self, row: Row, action: str) -> None:
        if action == "post":
            docs.post_sales_invoice(self.company, row)
            return
        if action in ("postAndSend", "send", "cancel", "cancelAndSend", "makeCorrectiveCreditMemo"):
            raise not_implemented(f"Microsoft.NAV.{action}")
        raise resource_not_found(f"Microsoft.NAV.{action}")


class SalesCreditMemosColl(TableColl):
    """salesCreditMemos ([BCApps] APIV2SalesCreditMemos.Page.al): drafts and posted credit memos
    in one set, like salesInvoices."""

    def __init__(self, company: Company) -> None:
        super().__init__(
            company, company.sales_credit_memos, SALES_CREDIT_MEMO, "Sales Cr. Memo Entity Buffer"
        )

    def render(self, row: Row) -> dict[str, Any]:
        out = super().render(row)
        out["currencyCode"] = out["currencyCode"] or self.company.currency
        # SetCalculatedFields → SetInvoiceId: the id of the posted invoice the Applies-to Doc.
        # No. names, else the empty GUID (a number of no posted invoice shows without an id).
        invoice = docs.applied_invoice(self.company, out["invoiceNumber"])
        out["invoiceId"] = invoice.id if invoice is not None else EMPTY_GUID
        return out

    def create(self, body: Any) -> Row:
        values, navs = parse_body(self.spec, body)
        return docs.create_sales_credit_memo(self.company, values, navs.get("salesCreditMemoLines"))

    def modify(self, row: Row, body: Any) -> None:
        values, navs = parse_body(self.spec, body)
        if navs:
            raise bad_request("Deep update is not supported.")
        docs.update_sales_credit_memo(self.company, row, values)

    def remove(self, row: Row) -> None:
        if row.data["_posted"]:
            raise dialog(docs.POSTED_CREDIT_MEMO)
        for line in docs.lines_of(self.company, row.id, sales=True):
            docs.delete_line(self.company, row, line, sales=True)
        for entry in self.company.dim_set.find_all("parentId", row.id):
            self.company.dim_set.delete(entry)
        self.table.delete(row)

    def navigate(self, row: Row, name: str) -> Coll:
        if name == "salesCreditMemoLines":
            return LinesColl(self.company, row, sales=True, credit=True)
        if name == "dimensionSetLines":
            return DimSetColl(self.company, row, "Sales_x0020_Credit_x0020_Memo", row)
        raise resource_not_found(name)

    def act(self, row: Row, action: str) -> None:
        if action == "post":
            docs.post_sales_credit_memo(self.company, row)
            return
        if action in ("postAndSend", "send", "cancel", "cancelAndSend"):
            raise not_implemented(f"Microsoft.NAV.{action}")
        raise resource_not_found(f"Microsoft.NAV.{action}")


class PurchaseInvoicesColl(TableColl):
    def __init__(self, company: Company) -> None:
        super().__init__(
            company, company.purchase_invoices, PURCHASE_INVOICE, "Purch. Inv. Entity Aggregate"
        )

    def render(self, row: Row) -> dict[str, Any]:
        out = super().render(row)
        out["currencyCode"] = out["currencyCode"] or self.company.currency
        return out

    # Purchase invoices are R/W in BC; the emulator seeds them through the control API and
    # does not implement API writes (said plainly with 501 rather than accepted silently).
    def create(self, body: Any) -> Row:
        raise not_implemented("POST purchaseInvoices (seed them via /_emulator/seed)")

    def modify(self, row: Row, body: Any) -> None:
        raise not_implemented("PATCH purchaseInvoices")

    def remove(self, row: Row) -> None:
        raise not_implemented("DELETE purchaseInvoices")

    def navigate(self, row: Row, name: str) -> Coll:
        if name == "purchaseInvoiceLines":
            return LinesColl(self.company, row, sales=False)
        if name == "dimensionSetLines":
            return DimSetColl(self.company, row, "Purchase_x0020_Invoice", row)
        raise resource_not_found(name)

    def act(self, row: Row, action: str) -> None:
        if action == "post":
            docs.post_purchase_invoice(self.company, row)
            return
        raise resource_not_found(f"Microsoft.NAV.{action}")


class LinesColl(TableColl):
    """salesInvoiceLines / salesCreditMemoLines / purchaseInvoiceLines, under a document or at
    company level. Invoice and credit memo lines share the Sales Line table; each set shows only
    the lines of its own documents."""

    def __init__(
        self, company: Company, doc: Row | None, *, sales: bool, credit: bool = False
    ) -> None:
        table = company.sales_lines if sales else company.purchase_lines
        if credit:
            spec, label = SALES_CREDIT_MEMO_LINE, "Sales Invoice Line Aggregate"
        elif sales:
            spec, label = SALES_INVOICE_LINE, "Sales Invoice Line Aggregate"
        else:
            spec, label = PURCHASE_INVOICE_LINE, "Purch. Inv. Line Aggregate"
        super().__init__(company, table, spec, label)
        self.doc = doc
        self.sales = sales
        self.credit = credit
        if credit:
            self.headers = company.sales_credit_memos
        else:
            self.headers = company.sales_invoices if sales else company.purchase_invoices

    def _mine(self, rows: list[Row]) -> list[Row]:
        return [r for r in rows if self.headers.get(r.data["documentId"]) is not None]

    def rows(self) -> list[Row]:
        if self.doc is None:
            return self._mine(super().rows())
        return docs.lines_of(self.company, self.doc.id, sales=self.sales)

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        if name == "documentId":
            if self.doc is not None and value != self.doc.id:
                return []
            if not isinstance(value, str) or self.headers.get(value) is None:
                return []
            return docs.lines_of(self.company, value, sales=self.sales)
        found = super().rows_eq(name, value)
        if found is None:
            return found
        if self.doc is None:
            return self._mine(found)
        return [r for r in found if r.data["documentId"] == self.doc.id]

    def check_list(self, flt: Filter | None) -> None:
        if self.doc is None and not (flt and any(k in ("id", "documentId") for k, _ in flt.eqs)):
            # The credit memo lines page words it with a lower-case "id"
            # (APIV2SalesCreditMemLines.Page.al IDOrDocumentIdShouldBeSpecifiedForLinesErr).
            which = "an id" if self.credit else "an Id"
            raise dialog(f"You must specify {which} or a Document Id to get the lines.")

    def lookup(self, key: str) -> Row | None:
        row = super().lookup(key)
        if row is None or self.headers.get(row.data["documentId"]) is None:
            return None
        if self.doc is not None and row.data["documentId"] != self.doc.id:
            return None
        return row

    def _doc_of(self, row: Row) -> Row:
        doc = self.headers.get(row.data["documentId"])
        assert doc is not None
        return doc

    def create(self, body: Any) -> Row:
        if not self.sales:
            raise not_implemented("POST purchaseInvoiceLines")
        doc = self.doc
        if doc is None:
            doc_id = body.get("documentId") if isinstance(body, dict) else None
            if not doc_id:
                raise dialog(docs.NO_DOCUMENT_ID)
            doc = self.headers.get(str(doc_id).lower())
            if doc is None:
                raise dialog(docs.NO_DOCUMENT)
        return docs.add_line(self.company, doc, body, sales=True)

    def modify(self, row: Row, body: Any) -> None:
        if not self.sales:
            raise not_implemented("PATCH purchaseInvoiceLines")
        values, navs = parse_body(self.spec, body)
        if navs:
            raise bad_request("Deep update is not supported.")
        docs.update_line(self.company, self._doc_of(row), row, values, sales=True)

    def remove(self, row: Row) -> None:
        if not self.sales:
            raise not_implemented("DELETE purchaseInvoiceLines")
        docs.delete_line(self.company, self._doc_of(row), row, sales=True)

    def navigate(self, row: Row, name: str) -> Coll:
        if name == "dimensionSetLines":
            doc = self._doc_of(row)
            parent_type = docs.line_parent_type(doc, self.sales)
            return DimSetColl(self.company, row, parent_type, doc)
        raise resource_not_found(name)


# [BCApps] page 30022: reading and creating without a parent have distinct texts
NO_PARENT_GET = "You must get to the parent first to get to the dimension set line."
NO_PARENT_CREATE = "You must get to the parent first to create a dimension set line."


class DimSetColl(Coll):
    """dimensionSetLines under a parent, keyed by the Dimension's id (bc-api §4.9)."""

    spec = DIMENSION_SET_LINE
    label = "Dimension Set Entry Buffer"

    def __init__(
        self, company: Company, parent: Row | None, parent_type: str, doc: Row | None
    ) -> None:
        self.company = company
        self.parent = parent
        self.parent_type = parent_type
        self.doc = doc

    def _parent(self, text: str = NO_PARENT_GET) -> Row:
        if self.parent is None:
            raise dialog(text)
        return self.parent

    def check_list(self, flt: Filter | None) -> None:
        self._parent()

    def rows(self) -> list[Row]:
        parent = self._parent()
        return sorted(self.company.dim_set.find_all("parentId", parent.id), key=lambda r: r.seq)

    def lookup(self, key: str) -> Row | None:
        parent = self._parent()
        return self.company.dim_set.get(f"{parent.id}:{guid_key(key)}")

    def render(self, row: Row) -> dict[str, Any]:
        return docs.render_dimension(self.company, row)

    def _writable(self) -> Row:
        parent = self._parent(NO_PARENT_CREATE)
        if self.doc is not None and self.doc.data.get("_posted"):
            kind = self.parent_type.replace("_x0020_", " ")
            raise dialog(
                f"Parent with ID {parent.id} does not exist or dimension set lines are read only "
                f"for parent type {kind}."
            )
        return parent

    def create(self, body: Any) -> Row:
        parent = self._writable()
        values, _ = parse_body(self.spec, body)
        return docs.add_dimension(self.company, parent, self.parent_type, values)

    def modify(self, row: Row, body: Any) -> None:
        parent = self._writable()
        values, _ = parse_body(self.spec, body)
        docs.update_dimension(self.company, parent, self.parent_type, row, values)

    def remove(self, row: Row) -> None:
        parent = self._writable()
        docs.delete_dimension(self.company, parent, self.parent_type, row)

    def key_error(self, key: str) -> BCError:
        return key_not_found("Dimension Set Entry", key)


COMPANY_SETS: dict[str, Callable[[Company], Coll]] = {
    "customers": CustomersColl,
    "paymentTerms": PaymentTermsColl,
    "dimensions": DimensionsColl,
    "dimensionValues": DimensionValuesColl,
    "dimensionSetLines": lambda c: DimSetColl(c, None, "", None),
    "accounts": lambda c: TableColl(c, c.gl_accounts, ACCOUNT, "G/L Account"),
    "generalLedgerSetup": lambda c: SingletonColl(c, c.gl_setup, GL_SETUP, "General Ledger Setup"),
    "companyInformation": lambda c: SingletonColl(
        c, c.company_information, COMPANY_INFORMATION, "Company Information"
    ),
    "salesInvoices": SalesInvoicesColl,
    "salesInvoiceLines": lambda c: LinesColl(c, None, sales=True),
    "salesCreditMemos": SalesCreditMemosColl,
    "salesCreditMemoLines": lambda c: LinesColl(c, None, sales=True, credit=True),
    "purchaseInvoices": PurchaseInvoicesColl,
    "purchaseInvoiceLines": lambda c: LinesColl(c, None, sales=False),
}


# ---- reading ------------------------------------------------------------------------------------


@dataclass
class Listing:
    rows: list[tuple[Row, dict[str, Any]]]
    filter: Filter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def select_rows(coll: Coll, opts: QueryOptions) -> list[tuple[Row, dict[str, Any]]]:
    """Filter (using an index for a top-level ``eq`` when there is one) and order."""
    flt = compile_filter(opts.filter, coll.spec) if opts.filter is not None else None
    coll.check_list(flt)
    candidates: list[Row] | None = None
    if flt is not None:
        for name, value in flt.eqs:
            candidates = coll.rows_eq(name, value)
            if candidates is not None:
                break
    if candidates is None:
        candidates = coll.rows()
    out: list[tuple[Row, dict[str, Any]]] = []
    for row in candidates:
        data = coll.render(row)
        if flt is None or flt.predicate(data):
            out.append((row, data))
    for name, _ in opts.orderby:
        if name not in coll.spec.by_name:
            raise query_error(
                f"Could not find a property named '{name}' on type '{coll.spec.qualified}'."
            )
    for name, desc in reversed(opts.orderby):
        out.sort(key=lambda rd, n=name: rd[1][n], reverse=desc)  # type: ignore[misc]
    return out


def check_select_expand(coll: Coll, opts: QueryOptions) -> None:
    for name in opts.select or ():
        if name not in coll.spec.by_name and name not in coll.spec.navigations:
            raise query_error(
                f"Could not find a property named '{name}' on type '{coll.spec.qualified}'."
            )
    for item in opts.expand:
        if item.name not in coll.spec.navigations:
            raise query_error(
                f"Could not find a property named '{item.name}' on type '{coll.spec.qualified}'."
            )


def shape(coll: Coll, row: Row, data: dict[str, Any], opts: QueryOptions) -> dict[str, Any]:
    """One entity in the answer: ETag, (selected) fields, expanded navigation properties."""
    out: dict[str, Any] = {"@odata.etag": row.etag}
    if opts.select:
        for name in opts.select:
            if name in data:
                out[name] = data[name]
    else:
        out.update(data)
    for item in opts.expand:
        out[item.name] = expand(coll.navigate(row, item.name), item)
    return out


def expand(coll: Coll, item: ExpandItem) -> list[dict[str, Any]]:
    check_select_expand(coll, item.options)
    rows = select_rows(coll, item.options)
    if item.options.skip:
        rows = rows[item.options.skip :]
    if item.options.top is not None:
        rows = rows[: item.options.top]
    return [shape(coll, r, d, item.options) for r, d in rows]


def list_reply(
    coll: Coll, opts: QueryOptions, req: ApiRequest, context: str, max_page: int
) -> Reply:
    """A collection answer with server-driven paging (bc-api §5.3)."""
    check_select_expand(coll, opts)
    rows = select_rows(coll, opts)
    total = len(rows)
    if opts.skiptoken:
        tok = opts.skiptoken.strip("'")
        try:
            kind, num = tok[0], int(tok[1:])
        except (IndexError, ValueError):
            raise query_error(f"The skip token '{opts.skiptoken}' is not valid.") from None
        # "s<seq>": rows after that key (insertion order); "o<n>": offset (when $orderby is used)
        rows = [rd for rd in rows if rd[0].seq > num] if kind == "s" else rows[num:]
        offset = num if kind == "o" else 0
    else:
        offset = 0
    if opts.skip:
        rows = rows[opts.skip :]
        offset += opts.skip
    top = opts.top
    if top is not None:
        rows = rows[:top]
    prefer = req.prefer()
    headers: dict[str, str] = {}
    page_size = max_page
    if "odata.maxpagesize" in prefer:
        try:
            asked = int(prefer["odata.maxpagesize"])
        except ValueError:
            asked = max_page
        if asked > 0:
            page_size = min(asked, max_page)
            headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
    body: dict[str, Any] = {"@odata.context": context}
    if opts.count:
        body["@odata.count"] = total
    page = rows[:page_size]
    body["value"] = [shape(coll, r, d, opts) for r, d in page]
    if len(rows) > page_size:
        last = page[-1][0]
        token = f"o{offset + page_size}" if opts.orderby else f"s{last.seq}"
        pairs = [(k, v) for k, v in req.pairs if k not in ("$skiptoken", "$top", "$skip")]
        if top is not None:
            pairs.append(("$top", str(top - page_size)))
        pairs.append(("$skiptoken", token))
        query = "&".join(
            f"{quote(k, safe='$')}={quote(v, safe=chr(39) + '(),=:$')}" for k, v in pairs
        )
        body["@odata.nextLink"] = f"{req.link_base}?{query}"
    return Reply(200, body, headers)


def entity_reply(
    coll: Coll, row: Row, opts: QueryOptions, context: str, status: int = 200
) -> Reply:
    check_select_expand(coll, opts)
    data = coll.render(row)
    body = {"@odata.context": context + "/$entity", **shape(coll, row, data, opts)}
    return Reply(status, body, {"ETag": row.etag})


# ---- concurrency tokens -------------------------------------------------------------------------

_ETAG = re.compile(r'^(W/)?"[^"]*"$')


def check_if_match(headers: Mapping[str, str], row: Row, *, required: bool) -> None:
    """If-Match per bc-api §5.2: missing/malformed → 400, stale → 409, ``*`` matches anything."""
    raw = headers.get("if-match", "").strip()
    if not raw:
        if required:
            raise BCError(
                400,
                "BadRequest_InvalidToken",
                "Could not validate the client concurrency token required by the service. Please "
                "provide a valid token in the client request.",
            )
        return
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    if "*" in tokens:
        return
    if not all(_ETAG.match(t) for t in tokens):
        raise BCError(
            400,
            "BadRequest_InvalidToken",
            "Could not validate the client concurrency token required by the service. Please "
            "provide a valid token in the client request.",
        )
    mine = row.etag.removeprefix("W/")
    if not any(t.removeprefix("W/") == mine for t in tokens):
        raise BCError(409, "Request_EntityChanged", "Another user has already changed the record.")


# ---- dispatch -----------------------------------------------------------------------------------


@dataclass
class Target:
    coll: Coll
    row: Row | None
    context: str  # path after $metadata#
    action: str | None = None


def resolve_company(env: Environment, ident: str) -> Company:
    ident = ident.strip().strip("'")
    company = env.companies.get(ident.lower()) if GUID_RE.match(ident) else env.by_name.get(ident)
    if company is None:
        raise company_not_found(ident)
    return company


def _resolve(ctx: ApiCtx, req: ApiRequest) -> Target:
    parsed = [split_segment(s) for s in req.segments]
    name, key = parsed[0]
    companies = CompaniesColl(ctx.env)
    if name == "companies":
        if key is None:
            if len(parsed) > 1:
                raise resource_not_found(parsed[1][0])
            return Target(companies, None, "companies")
        crow = companies.lookup(key)
        if crow is None:
            raise companies.key_error(key)
        context = f"companies({crow.id})"
        rest = parsed[1:]
        if not rest:
            return Target(companies, crow, "companies")
        company = ctx.env.companies[crow.id]
    else:
        # ``…/api/v2.0/{entitySet}?company={id}`` (bc-api §1.1)
        ident = next((v for k, v in req.pairs if k == "company"), None)
        if name not in COMPANY_SETS:
            raise resource_not_found(name)
        if ident is None:
            raise company_not_found("")
        company = resolve_company(ctx.env, ident)
        context = ""
        rest = parsed
    first, first_key = rest[0]
    factory = COMPANY_SETS.get(first)
    if factory is None:
        raise resource_not_found(first)
    coll = factory(company)
    context = f"{context}/{first}" if context else first
    row: Row | None = None
    if first_key is not None:
        row = coll.lookup(first_key)
        if row is None:
            raise coll.key_error(first_key)
    for i, (seg, seg_key) in enumerate(rest[1:], start=1):
        if row is None:
            raise resource_not_found(seg)
        if seg.startswith("Microsoft.NAV."):
            if seg_key not in (None, "") or i != len(rest) - 1:
                raise resource_not_found(seg)
            return Target(coll, row, context, action=seg.removeprefix("Microsoft.NAV."))
        if seg not in coll.spec.navigations:
            raise resource_not_found(seg)
        context = f"{context}({row.id})/{seg}"
        coll = coll.navigate(row, seg)
        row = None
        if seg_key is not None:
            row = coll.lookup(seg_key)
            if row is None:
                raise coll.key_error(seg_key)
    return Target(coll, row, context)


def service_document(ctx: ApiCtx) -> Reply:
    names = ["companies", *COMPANY_SETS]
    return Reply(
        200,
        {
            "@odata.context": f"{ctx.root}/$metadata",
            "value": [{"name": n, "kind": "EntitySet", "url": n} for n in names],
        },
    )


def handle_api(ctx: ApiCtx, req: ApiRequest) -> Reply:
    """Serve one API v2.0 call; every BC error becomes its JSON error answer."""
    try:
        if not req.segments or req.segments == [""]:
            if req.method != "GET":
                raise method_not_allowed(req.method, "")
            return service_document(ctx)
        if req.segments[0] == "$metadata":
            raise not_implemented("$metadata")
        opts = parse_options(req.pairs)
        if req.method == "GET":
            return _get(ctx, req, opts)
        with ctx.world.tx.transaction():
            return _write(ctx, req, opts)
    except BCError as e:
        return e.reply()


def _get(ctx: ApiCtx, req: ApiRequest, opts: QueryOptions) -> Reply:
    t = _resolve(ctx, req)
    context = f"{ctx.root}/$metadata#{t.context}"
    if t.action is not None:
        raise method_not_allowed("GET", f"Microsoft.NAV.{t.action}")
    if t.row is not None:
        return entity_reply(t.coll, t.row, opts, context)
    return list_reply(t.coll, opts, req, context, ctx.max_page_size)


def _write(ctx: ApiCtx, req: ApiRequest, opts: QueryOptions) -> Reply:
    t = _resolve(ctx, req)
    context = f"{ctx.root}/$metadata#{t.context}"
    minimal = (
        req.prefer().get("return") in ("minimal", "representation=minimal")
        or "return-no-content" in req.prefer()
    )
    m = req.method
    if m == "POST" and t.action is not None:
        assert t.row is not None
        check_if_match(req.headers, t.row, required=False)
        t.coll.act(t.row, t.action)
        return Reply(204)
    if t.action is not None:
        raise method_not_allowed(m, f"Microsoft.NAV.{t.action}")
    if m == "POST":
        if t.row is not None:
            raise method_not_allowed("POST", t.coll.spec.entity_set)
        row = t.coll.create(req.json())
        location = f"{ctx.root}/{t.context}({row.id})"
        if minimal:
            return Reply(
                204,
                None,
                {"Location": location, "ETag": row.etag, "Preference-Applied": "return=minimal"},
            )
        reply = entity_reply(t.coll, row, opts, context, status=201)
        reply.headers["Location"] = location
        return reply
    if m == "PATCH":
        if t.row is None:
            raise method_not_allowed("PATCH", t.coll.spec.entity_set)
        check_if_match(req.headers, t.row, required=True)
        t.coll.modify(t.row, req.json())
        if minimal:
            return Reply(204, None, {"ETag": t.row.etag, "Preference-Applied": "return=minimal"})
        return entity_reply(t.coll, t.row, opts, context)
    if m == "DELETE":
        if t.row is None:
            raise method_not_allowed("DELETE", t.coll.spec.entity_set)
        check_if_match(req.headers, t.row, required=False)
        t.coll.remove(t.row)
        return Reply(204)
    raise method_not_allowed(m, t.coll.spec.entity_set)
