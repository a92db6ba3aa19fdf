"""Sales/purchase invoices: defaults from the customer, lines, totals, dimension sets, posting.

Error texts are BC's where bc-api.md records them (§4.9, §4.11, §4.12); others are marked
"approximated" in comments and in README.md.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Any

from .entities import (
    BLANK,
    DIMENSION_SET_LINE,
    EMPTY_GUID,
    PURCHASE_INVOICE,
    PURCHASE_INVOICE_LINE,
    SALES_CREDIT_MEMO,
    SALES_CREDIT_MEMO_LINE,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    EntitySpec,
    norm_number,
)
from .errors import (
    BCError,
    data_not_found_filter,
    dialog,
    invalid_table_relation,
    record_not_found,
)
from .store import Company, Row, Table

DRAFT = "Draft"
OPEN = "Open"
IN_REVIEW = "In_x0020_Review"
# "Status" of an unposted Sales Header (enum "Sales Document Status"); posted invoices have none.
DOC_OPEN = "Open"
DOC_RELEASED = "Released"
DOC_PENDING_APPROVAL = "Pending Approval"
DOC_PENDING_PREPAYMENT = "Pending Prepayment"
DOC_STATUSES = (DOC_OPEN, DOC_RELEASED, DOC_PENDING_APPROVAL, DOC_PENDING_PREPAYMENT)
# [BCApps] APIV2SalesInvoices.Page.al, GetDraftInvoice: refused when the aggregate is Posted.
DRAFT_ONLY = "The action can be applied to a draft invoice only."
# [BCApps] codeunit 5477 "Sales Invoice Aggregator" / page 30043 "APIV2 - Sales Invoice Lines"
POSTED = "The invoice has been posted and can no longer be modified."
# [BCApps] Sales-Post (SalesPost.Codeunit.al), CheckTotalInvoiceAmount: for an invoice or order
# whose total line amount and total incl. VAT are both below 0.
NEGATIVE_INVOICE = "The total amount for the invoice must be 0 or greater."
# ---- sales credit memos ([BCApps] APIV2SalesCreditMemos.Page.al, GraphMgtSalCrMemoBuf.Codeunit.al)
CREDIT_MEMO = "Credit Memo"  # Sales Header "Document Type"
DRAFT_CREDIT_MEMO_ONLY = "The action can be applied to a draft credit memo only."
POSTED_CREDIT_MEMO = "The credit memo has been posted and can no longer be modified."
NO_CREDIT_MEMO_LINE = "Please add at least one line item to the credit memo."
INVOICE_ID_NO_MATCH = 'The "invoiceId" does not match to an Invoice.'
INVOICE_VALUES_NO_MATCH = 'The "invoiceId" and "invoiceNumber" do not match to a specific Invoice.'
LINE_EXISTS = "You cannot insert a line because a line already exists."
NO_DOCUMENT = "No document with the specified ID exists."
NO_DOCUMENT_ID = "You must specify a document id to get the lines."

# ---- date formulas (Payment Terms "Due Date Calculation") -------------------------------------

_DF_TERM = re.compile(r"([+-]?)(?:(\d+)([DWMQY])|C([DWMQY]))", re.I)


def valid_date_formula(text: str) -> bool:
    t = text.strip().strip("<>")
    if not t:
        return True
    pos = 0
    for m in _DF_TERM.finditer(t):
        if m.start() != pos:
            return False
        pos = m.end()
    return pos == len(t)


def apply_date_formula(formula: str, base: dt.date) -> dt.date:
    """Evaluate a BC DateFormula such as ``30D``, ``1M+CM``, ``14D`` (subset: D W M Q Y and C…)."""
    t = formula.strip().strip("<>")
    d = base
    for m in _DF_TERM.finditer(t):
        sign = -1 if m.group(1) == "-" else 1
        if m.group(2):
            n, unit = sign * int(m.group(2)), m.group(3).upper()
            if unit == "D":
                d += dt.timedelta(days=n)
            elif unit == "W":
                d += dt.timedelta(weeks=n)
            else:
                months = n * {"M": 1, "Q": 3, "Y": 12}[unit]
                y, mo = divmod(d.month - 1 + months, 12)
                year, month = d.year + y, mo + 1
                d = d.replace(
                    year=year, month=month, day=min(d.day, calendar.monthrange(year, month)[1])
                )
        else:
            unit = m.group(4).upper()
            if unit == "D":
                continue
            if unit == "W":
                d += dt.timedelta(days=6 - d.weekday())
            elif unit == "M":
                d = d.replace(day=calendar.monthrange(d.year, d.month)[1])
            elif unit == "Q":
                last_month = ((d.month - 1) // 3) * 3 + 3
                d = d.replace(month=last_month, day=calendar.monthrange(d.year, last_month)[1])
            else:
                d = d.replace(month=12, day=31)
    return d


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


# ---- helpers ------------------------------------------------------------------------------------


def lcy_to_blank(company: Company, code: str) -> str:
    """BC stores the local currency as blank; the API shows the LCY code for blank."""
    return "" if code == company.currency else code


def payment_terms_by_id(company: Company, pid: str) -> Row | None:
    if pid == EMPTY_GUID:
        return None
    row = company.payment_terms.get(pid)
    if row is None:
        raise dialog('The "paymentTermsId" does not match to a Payment Terms.')
    return row


def _due_date(company: Company, invoice_date: str, pt_id: str) -> str:
    pt = company.payment_terms.get(pt_id) if pt_id != EMPTY_GUID else None
    if pt is None or not pt.data.get("dueDateCalculation"):
        return invoice_date
    return apply_date_formula(
        pt.data["dueDateCalculation"], dt.date.fromisoformat(invoice_date)
    ).isoformat()


def _customer(
    company: Company, values: dict[str, Any], id_key: str, no_key: str, role: str
) -> Row | None:
    """customerId/customerNumber (role "sell-to") or billToCustomerId/…Number ("bill-to")."""
    row: Row | None = None
    if values.get(id_key, EMPTY_GUID) != EMPTY_GUID:
        row = company.customers.get(values[id_key])
        if row is None:
            raise dialog(f"The {role} customer cannot be found.")
    if values.get(no_key):
        if row is not None:
            if row.data["number"] != values[no_key]:
                raise dialog(f"The {role} customer values do not match to a specific Customer.")
            return row
        row = company.customers.find("number", values[no_key])
        if row is None:
            raise dialog(f"The {role} customer cannot be found.")
    return row


def check_currency(company: Company, values: dict[str, Any]) -> None:
    """currencyId/currencyCode as APIV2 pages validate them; LCY is stored blank."""
    if "currencyId" in values and values["currencyId"] != EMPTY_GUID:
        code = next(
            (c for c, cid in company.currencies.items() if cid == values["currencyId"]), None
        )
        if code is None:
            raise dialog('The "currencyId" does not match to a Currency.')
        if "currencyCode" in values and lcy_to_blank(company, values["currencyCode"]) != code:
            raise dialog("The currency values do not match to a specific Currency.")
        values["currencyCode"] = code
        return
    if "currencyCode" in values:
        code = lcy_to_blank(company, values["currencyCode"])
        if code and code not in company.currencies:
            raise dialog('The "currencyCode" does not match to a Currency.')
        values["currencyCode"] = code
        values["currencyId"] = company.currencies.get(code, EMPTY_GUID)


# ---- sales invoices -----------------------------------------------------------------------------


def unposted_status(doc_status: str) -> str:
    """The API ``status`` of an unposted invoice from its Sales Header status.

    [BCApps] SalesInvoiceAggregator.Codeunit.al, InsertOrModifyFromSalesHeader: "Pending
    Approval" → ``In Review``; "Released" and "Pending Prepayment" → ``Open`` (the status posted
    invoices show too); anything else (Open) → ``Draft``.
    """
    if doc_status == DOC_PENDING_APPROVAL:
        return IN_REVIEW
    if doc_status in (DOC_RELEASED, DOC_PENDING_PREPAYMENT):
        return OPEN
    return DRAFT


def set_document_status(company: Company, row: Row, doc_status: str) -> None:
    """Release / reopen / send for approval an unposted invoice or credit memo, as a person does
    in BC (credit memos map the Sales Header status the same way: GraphMgtSalCrMemoBuf.Codeunit.al
    SetStatusOptionFromSalesHeader)."""
    if row.data["_posted"]:
        raise ValueError("a posted document has no document status")
    if doc_status not in DOC_STATUSES:
        raise ValueError(f"status must be one of {DOC_STATUSES}")
    table = company.sales_credit_memos if is_credit_memo(row) else company.sales_invoices
    table.update(row, {"_docStatus": doc_status, "status": unposted_status(doc_status)})


def _test_posting_group(customer: dict[str, Any], key: str, caption: str) -> None:
    """``Customer.TestField(…)``: BC's FieldValidation text (bc-api §5.1)."""
    if not customer.get(key):
        raise BCError(
            400,
            "Application_FieldValidationException",
            f"{caption} must have a value in Customer: No.={customer['number']}. "
            "It cannot be zero or empty.",
        )


def _new_sales_header(
    company: Company, values: dict[str, Any], spec: EntitySpec, series: str, date_field: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A new Sales Header (invoice or credit memo) from the customer, as the API pages insert it:
    ``(data, sell-to customer, bill-to customer)``; ``values`` loses the customer keys."""
    cust = _customer(company, values, "customerId", "customerNumber", "sell-to")
    if cust is None:
        raise dialog('A "customerNumber" or a "customerId" must be provided.')
    c = cust.data
    if c["blocked"] == "All":
        raise dialog(
            f"You cannot create this type of document when Customer {c['number']} is blocked "
            "with type All"
        )
    check_currency(company, values)
    bill = _customer(company, values, "billToCustomerId", "billToCustomerNumber", "bill-to") or cust
    b = bill.data
    if company.posting_requires_posting_groups:
        # [BCApps] SalesHeader.Table.al: validating "Sell-to Customer No." runs
        # Customer.TestField("Gen. Bus. Posting Group") (unless sales tax is on), then it sets
        # "Bill-to Customer No.", whose validation runs Customer.TestField("Customer Posting
        # Group"). Both run on POST salesInvoices (bc-api Corrections 5) and on POST
        # salesCreditMemos (the same Sales Header validation, GraphMgtSalCrMemoBuf
        # PropagateOnInsert): a customer without posting groups fails the draft create, not the
        # post. The header keeps its own copies.
        _test_posting_group(c, "_genBusPostingGroup", "Gen. Bus. Posting Group")
        _test_posting_group(b, "_customerPostingGroup", "Customer Posting Group")
    data = spec.defaults()
    data.update(
        number=company.next_number(series),
        customerId=cust.id,
        customerNumber=c["number"],
        customerName=c["displayName"],
        billToCustomerId=bill.id,
        billToCustomerNumber=b["number"],
        billToName=b["displayName"],
        phoneNumber=c["phoneNumber"],
        email=c["email"],
        currencyCode=c["currencyCode"],
        paymentTermsId=c["paymentTermsId"],
        currencyId=c["currencyId"],
        postingDate=today(),
        status=DRAFT,
        discountAppliedBeforeTax=True,
    )
    data[date_field] = today()
    prefixes = [("sellTo", c), ("billTo", b)]
    if "shipToName" in spec.by_name:
        data["shipToName"] = c["displayName"]
        prefixes.append(("shipTo", c))
    for prefix, src in prefixes:
        data[prefix + "AddressLine1"] = src["addressLine1"]
        data[prefix + "AddressLine2"] = src["addressLine2"]
        data[prefix + "City"] = src["city"]
        data[prefix + "Country"] = src["country"]
        data[prefix + "State"] = src["state"]
        data[prefix + "PostCode"] = src["postalCode"]
    for k in ("customerId", "customerNumber", "billToCustomerId", "billToCustomerNumber"):
        values.pop(k, None)
    data.update(values)
    payment_terms_by_id(company, data["paymentTermsId"])
    data["_posted"] = False
    data["_docStatus"] = DOC_OPEN
    data["_genBusPostingGroup"] = c.get("_genBusPostingGroup", "")
    data["_customerPostingGroup"] = b.get("_customerPostingGroup", "")
    return data, c, b


def _insert_lines(company: Company, row: Row, lines: Any) -> None:
    if lines is not None:
        if not isinstance(lines, list):
            raise BCError(400, "BadRequest", "Invalid Request Body")
        for line in lines:
            add_line(company, row, line, sales=True)
    recompute_totals(company, row, sales=True)


def create_sales_invoice(company: Company, values: dict[str, Any], lines: Any) -> Row:
    data, _, _ = _new_sales_header(company, values, SALES_INVOICE, "sales_invoice", "invoiceDate")
    if "dueDate" not in values:
        data["dueDate"] = _due_date(company, data["invoiceDate"], data["paymentTermsId"])
    row = company.sales_invoices.insert(data)
    for dim_no in (1, 2):
        code = values.get(f"shortcutDimension{dim_no}Code")
        if code:
            set_shortcut_dimension(company, row, dim_no, code, "Sales_x0020_Invoice")
    _insert_lines(company, row, lines)
    return row


def update_sales_invoice(company: Company, row: Row, values: dict[str, Any]) -> None:
    _update_sales_header(company, row, values, company.sales_invoices, "Sales_x0020_Invoice")


def _update_sales_header(
    company: Company, row: Row, values: dict[str, Any], table: Table, parent_type: str
) -> None:
    if row.data["_posted"]:
        raise dialog(posted_text(row))
    changes = dict(values)
    if "customerId" in values or "customerNumber" in values:
        cust = _customer(company, values, "customerId", "customerNumber", "sell-to")
        if cust is not None:
            changes.update(
                customerId=cust.id,
                customerNumber=cust.data["number"],
                customerName=cust.data["displayName"],
            )
    check_currency(company, changes)
    if "paymentTermsId" in changes:
        payment_terms_by_id(company, changes["paymentTermsId"])
    table.update(row, changes)
    for dim_no in (1, 2):
        key = f"shortcutDimension{dim_no}Code"
        if key in values:
            set_shortcut_dimension(company, row, dim_no, values[key], parent_type)
    recompute_totals(company, row, sales=True)


# ---- sales credit memos -------------------------------------------------------------------------


def applied_invoice(company: Company, number: str) -> Row | None:
    """The posted invoice a credit memo's Applies-to Doc. No. names, if there is one
    ([BCApps] APIV2SalesCreditMemos.Page.al SetInvoiceId: ``SalesInvoiceHeader.Get``)."""
    if not number:
        return None
    row = company.sales_invoices.find("number", number)
    return row if row is not None and row.data["_posted"] else None


def _applies_to(company: Company, values: dict[str, Any]) -> None:
    """``invoiceId`` / ``invoiceNumber`` → the Applies-to Doc. No. (stored as ``invoiceNumber``),
    validated as [BCApps] APIV2SalesCreditMemos.Page.al does, in control order:

    - ``invoiceId``: ``SalesInvoiceAggregator.GetSalesInvoiceHeaderFromId`` must find a *posted*
      invoice (Sales Invoice Header, by its draft id or its own id; the emulator keeps one id
      for both): a draft's id, or an unknown one, fails with InvoiceIdDoesNotMatchAnInvoiceErr.
      The empty GUID clears the application.
    - ``invoiceNumber`` after an ``invoiceId``: must be that invoice's number
      (InvoiceValuesDontMatchErr). Alone it is taken as it is: the page checks nothing, and
      SalesHeader.Table.al "Applies-to Doc. No." OnValidate only marks an open customer ledger
      entry when there is one (CustLedgerEntry.SetAmountToApply); a wrong number fails at the
      post (see :func:`_apply_to_invoice`).
    """
    if "invoiceId" not in values and "invoiceNumber" not in values:
        return
    given = values.pop("invoiceNumber", None)
    found = ""
    invoice_id = values.pop("invoiceId", EMPTY_GUID)
    if invoice_id != EMPTY_GUID:
        row = company.sales_invoices.get(invoice_id)
        if row is None or not row.data["_posted"]:
            raise dialog(INVOICE_ID_NO_MATCH)
        found = row.data["number"]
    if found and given is not None and given != found:
        raise dialog(INVOICE_VALUES_NO_MATCH)
    values["invoiceNumber"] = found or given or ""


def _credit_memo_due_date(company: Company, document_date: str, pt_id: str) -> str:
    """[BCApps] SalesHeader.Table.al "Payment Terms Code" OnValidate: for a credit document the
    due date is the document date unless the terms have "Calc. Pmt. Disc. on Cr. Memos"."""
    pt = company.payment_terms.get(pt_id) if pt_id != EMPTY_GUID else None
    if pt is None or not pt.data.get("calculateDiscountOnCreditMemos"):
        return document_date
    return _due_date(company, document_date, pt_id)


def create_sales_credit_memo(company: Company, values: dict[str, Any], lines: Any) -> Row:
    """``POST salesCreditMemos`` (deep insert of ``salesCreditMemoLines``): a Sales Header of
    type Credit Memo, validated like an invoice's (GraphMgtSalCrMemoBuf PropagateOnInsert →
    TransferFieldsWithValidate into the Sales Header), numbered from the credit memo series."""
    _applies_to(company, values)
    data, _, _ = _new_sales_header(
        company, values, SALES_CREDIT_MEMO, "sales_credit_memo", "creditMemoDate"
    )
    data["_docType"] = CREDIT_MEMO
    if "dueDate" not in values:
        data["dueDate"] = _credit_memo_due_date(
            company, data["creditMemoDate"], data["paymentTermsId"]
        )
    row = company.sales_credit_memos.insert(data)
    for dim_no in (1, 2):
        code = values.get(f"shortcutDimension{dim_no}Code")
        if code:
            set_shortcut_dimension(company, row, dim_no, code, "Sales_x0020_Credit_x0020_Memo")
    _insert_lines(company, row, lines)
    return row


def update_sales_credit_memo(company: Company, row: Row, values: dict[str, Any]) -> None:
    if row.data["_posted"]:
        raise dialog(POSTED_CREDIT_MEMO)
    _applies_to(company, values)
    _update_sales_header(
        company, row, values, company.sales_credit_memos, "Sales_x0020_Credit_x0020_Memo"
    )


def post_sales_credit_memo(company: Company, row: Row) -> None:
    """``Microsoft.NAV.post`` of a credit memo ([BCApps] APIV2SalesCreditMemos.Page.al Post):
    GetDraftCreditMemo refuses a posted one (DraftCreditMemoActionErr); PostCreditMemo refuses a
    credit memo without lines (NoLineErr) before SendToPosting; then the approval check and
    Sales-Post, which applies it to the invoice it names (Applies-to Doc. No.)."""
    d = row.data
    if d["_posted"]:
        raise dialog(DRAFT_CREDIT_MEMO_ONLY)
    if not lines_of(company, row.id, sales=True):
        raise dialog(NO_CREDIT_MEMO_LINE)
    _check_approval(company, d, company.sales_credit_memo_approval, "Sales Credit Memo")
    _check_postable(company, row, "Credit Memo", blocked=("All",))
    applied = _apply_to_invoice(company, row)
    total = d["totalAmountIncludingTax"]
    # [BCApps] GraphMgtSalCrMemoBuf.Codeunit.al SetStatusOptionFromSalesCreditMemoHeader: Paid
    # when the credit memo's customer ledger entry is closed (SalesCrMemoHeader.Table.al, Paid
    # = no open entry), i.e. it was applied in full; else Open.
    status = "Paid" if total > 0 and applied >= total else OPEN
    company.sales_credit_memos.update(
        row,
        {
            "number": company.next_number("posted_sales_credit_memo"),
            "status": status,
            "_posted": True,
            "_draftNumber": d["number"],
        },
    )


def open_amount(company: Company, invoice: Row) -> float:
    """What is still open on a posted invoice's customer ledger entry: its total less what
    payments and credit memos applied to it (payments.py keeps the applications, so a posted
    credit memo lowers the invoice's ``remainingAmount`` like a payment does). Paid and
    canceled invoices have no open entry."""
    from .payments import remaining  # payments.py builds on this module

    if invoice.data["status"] in ("Paid", "Canceled"):
        return 0.0
    return float(remaining(company, invoice))


def _apply_to_invoice(company: Company, memo: Row) -> float:
    """Sales-Post's application of a credit memo to the invoice named by its Applies-to Doc. No.
    ([BCApps] GenJnlPostLine.Codeunit.al PrepareTempCustLedgEntry): ``FindFirst`` of the open
    customer ledger entry with that Document No., Document Type Invoice and the credit memo's
    (bill-to) customer, so an invoice that is not posted, belongs to another customer or is
    closed (paid, canceled, fully credited) fails the post; then TestField(Positive) and
    GenJnlApply.CheckAgainstApplnCurrency (same currency). Returns the amount applied, which is
    recorded on the invoice (``_creditedAmount``, shown as ``creditedAmount`` by the control
    API); an invoice credited in full is closed and turns Paid (SalesInvoiceAggregator.Codeunit.al:
    Paid when its entry is closed; the status change updates lastModifiedDateTime)."""
    d = memo.data
    number = d.get("invoiceNumber") or ""
    if not number:
        return 0.0
    customer = d["billToCustomerNumber"]
    invoice = applied_invoice(company, number)
    if (
        invoice is None
        or invoice.data["billToCustomerNumber"] != customer
        or open_amount(company, invoice) <= 0
    ):
        raise data_not_found_filter(
            "Cust. Ledger Entry",
            f"Document No.: {number}, Document Type: Invoice, Customer No.: {customer}, Open: Yes",
        )
    total = float(d["totalAmountIncludingTax"])
    if total < 0:
        # The credit memo's own entry would be positive, like the invoice's (approximated text:
        # the invoice number stands for the entry number).
        raise BCError(
            400,
            "Application_FieldValidationException",
            f"Positive must be equal to 'No'  in Cust. Ledger Entry: Document No.={number}. "
            "Current value is 'Yes'.",
        )
    if d["currencyCode"] != invoice.data["currencyCode"]:
        raise dialog("All entries in one application must be in the same currency.")
    from .payments import apply  # payments.py builds on this module

    still_open = open_amount(company, invoice)
    applied = min(total, still_open)
    # The application is the invoice's entry's, like a payment's: it lowers remainingAmount and
    # closes the entry (status Paid, lastModifiedDateTime moved) when nothing stays open.
    apply(company, invoice, applied, kind="credit_memo", reference=str(d.get("number") or ""))
    credited = norm_number(float(invoice.data.get("_creditedAmount", 0)) + applied)
    company.sales_invoices.update(invoice, {"_creditedAmount": credited}, touch=False)
    return applied


def set_shortcut_dimension(
    company: Company, header: Row, dim_no: int, code: str, parent_type: str
) -> None:
    """Header shortcut dimension 1/2 ↔ the header's dimension set (bc-api §4.9, last rule)."""
    setup = next(iter(company.gl_setup), None)
    dim_code = setup.data[f"shortcutDimension{dim_no}Code"] if setup else ""
    if not dim_code:
        if code:
            raise dialog(f"Shortcut dimension {dim_no} is not set up in General Ledger Setup.")
        return
    dim = company.dimension_by_code(dim_code)
    if dim is None:
        return
    key = f"{header.id}:{dim.id}"
    existing = company.dim_set.get(key)
    if not code:
        if existing is not None:
            company.dim_set.delete(existing)
        return
    val = company.dimension_value(dim.id, code)
    if val is None:
        raise invalid_table_relation(
            f"Shortcut Dimension {dim_no} Code", "Sales Header", code.upper(), "Dimension Value"
        )
    if existing is None:
        company.dim_set.insert(
            {"parentId": header.id, "parentType": parent_type, "id": dim.id, "valueId": val.id}, key
        )
    else:
        company.dim_set.update(existing, {"valueId": val.id})


def is_credit_memo(doc: Row) -> bool:
    """A sales credit memo header (BC's Sales Header "Document Type" = Credit Memo)."""
    return doc.data.get("_docType") == CREDIT_MEMO


def _doc_table(company: Company, doc: Row, sales: bool) -> tuple[Table, Table, EntitySpec]:
    if sales and is_credit_memo(doc):
        return company.sales_credit_memos, company.sales_lines, SALES_CREDIT_MEMO_LINE
    if sales:
        return company.sales_invoices, company.sales_lines, SALES_INVOICE_LINE
    return company.purchase_invoices, company.purchase_lines, PURCHASE_INVOICE_LINE


def posted_text(doc: Row) -> str:
    """The refusal to change a posted document: [BCApps] "Sales Invoice Aggregator" or
    GraphMgtSalCrMemoBuf.Codeunit.al (CannotModifyPostedCrMemoErr)."""
    return POSTED_CREDIT_MEMO if is_credit_memo(doc) else POSTED


def line_parent_type(doc: Row, sales: bool) -> str:
    """``parentType`` of a line's dimension set lines (APIV2 - Dimension Set Lines)."""
    if not sales:
        return "Purchase_x0020_Invoice_x0020_Line"
    if is_credit_memo(doc):
        return "Sales_x0020_Credit_x0020_Memo_x0020_Line"
    return "Sales_x0020_Invoice_x0020_Line"


def lines_of(company: Company, doc_id: str, *, sales: bool) -> list[Row]:
    table = company.sales_lines if sales else company.purchase_lines
    return sorted(table.find_all("documentId", doc_id), key=lambda r: r.data["sequence"])


def _validate_line_object(company: Company, data: dict[str, Any], given: dict[str, Any]) -> None:
    """What BC validates when a line's type/number is set (at insert/modify, not at posting)."""
    lt = data["lineType"]
    number = data["lineObjectNumber"]
    if lt == "Account":
        if data["accountId"] != EMPTY_GUID and not number:
            acc = company.gl_accounts.get(data["accountId"])
            if acc is None:
                raise dialog("Account does not exist.")
            number = data["lineObjectNumber"] = acc.data["number"]
        if not number:
            return
        acc = company.gl_accounts.find("number", number)
        if acc is None:
            # APIV2 - Sales Invoice Lines, lineObjectNumber.OnValidate: GLAccount.Get fails →
            # Error(AccountDoesNotExistErr) — BC's text does not name the account.
            raise dialog("Account does not exist.")
        a = acc.data
        if a["blocked"]:
            raise BCError(
                400,
                "Application_FieldValidationException",
                f"Blocked must be equal to 'No'  in G/L Account: No.={number}. "
                "Current value is 'Yes'.",
            )
        if a["accountType"] != "Posting":
            raise BCError(
                400,
                "Application_FieldValidationException",
                f"Account Type must be equal to 'Posting'  in G/L Account: No.={number}. "
                f"Current value is '{a['accountType']}'.",
            )
        if not a["directPosting"]:
            raise BCError(
                400,
                "Application_FieldValidationException",
                f"Direct Posting must be equal to 'Yes'  in G/L Account: No.={number}. "
                "Current value is 'No'.",
            )
        data["accountId"] = acc.id
        if not given.get("description"):
            data["description"] = data["description"] or a["displayName"]
        if "taxCode" not in given and not data["taxCode"]:
            data["taxCode"] = a.get("_vatCode", "")
    elif lt == "Comment":
        if number:  # Sales Line "No." of a comment line relates to Standard Text
            raise record_not_found("Standard Text", f"Code='{number}'")
    elif lt == "Item":
        # Items are not modelled: a company without items, as far as the API can tell.
        if number or data["itemId"] != EMPTY_GUID:
            raise dialog("Item does not exist.")
    else:
        table = {
            "Resource": "Resource",
            "Fixed_x0020_Asset": "Fixed Asset",
            "Charge": "Item Charge",
            "Allocation_x0020_Account": "Allocation Account",
        }[lt]
        if number:
            raise record_not_found(table, f"No.='{number}'")


def _line_amounts(
    company: Company, data: dict[str, Any], given: dict[str, Any], sales: bool
) -> None:
    if sales:
        # [BCApps] APIV2SalesInvoiceLines.Page.al, taxCode.OnValidate: Validate("VAT Prod.
        # Posting Group", COPYSTR(Rec."Tax Code", 1, 20)) (Tax Group Code in sales-tax
        # countries). The page takes up to 50 characters and silently keeps the first 20.
        data["taxCode"] = data["taxCode"][:20]
    code = data["taxCode"]
    if code and code not in company.vat:
        raise invalid_table_relation(
            "VAT Prod. Posting Group",
            "Sales Invoice Line Aggregate" if sales else "Purch. Inv. Line Aggregate",
            code,
            "VAT Product Posting Group",
        )
    if data["lineType"] == "Comment":
        for k in (
            "quantity",
            "discountAmount",
            "discountPercent",
            "amountExcludingTax",
            "taxPercent",
            "totalTaxAmount",
            "amountIncludingTax",
            "netAmount",
            "netTaxAmount",
            "netAmountIncludingTax",
        ):
            data[k] = 0
        return
    price = data["unitPrice"] if sales else data["unitCost"]
    gross = round(data["quantity"] * price, 2)
    if "discountAmount" in given and "discountPercent" not in given:
        disc = round(data["discountAmount"], 2)
        data["discountPercent"] = norm_number(disc / gross * 100) if gross else 0
    else:
        disc = round(gross * data["discountPercent"] / 100, 2)
    excl = round(gross - disc, 2)
    pct = company.vat.get(code, 0.0) if code else 0.0
    data["discountAmount"] = norm_number(disc)
    data["amountExcludingTax"] = norm_number(excl)
    data["taxPercent"] = norm_number(pct)
    tax = round(excl * pct / 100, 2)
    data["totalTaxAmount"] = norm_number(tax)
    data["amountIncludingTax"] = norm_number(excl + tax)


def add_line(company: Company, doc: Row, body: Any, *, sales: bool) -> Row:
    """Insert a line under ``doc`` (deep insert or ``…/salesInvoiceLines`` POST)."""
    from .entities import parse_body  # local: avoids a cycle at import time

    _, lines, spec = _doc_table(company, doc, sales)
    if doc.data.get("_posted"):
        raise dialog(posted_text(doc))
    values, navs = parse_body(spec, body)
    if values.get("documentId", doc.id) != doc.id:
        raise dialog('The value for "documentId" cannot be modified.')
    existing = lines_of(company, doc.id, sales=sales)
    data = spec.defaults()
    if (
        values.get("accountId", EMPTY_GUID) != EMPTY_GUID
        and values.get("itemId", EMPTY_GUID) != EMPTY_GUID
    ):
        raise dialog('Both "itemId" and "accountId" are specified. Specify only one of them.')
    if "lineType" not in values:  # the enum's first member (Comment) unless an id says otherwise
        if values.get("accountId", EMPTY_GUID) != EMPTY_GUID:
            values["lineType"] = "Account"
        elif values.get("itemId", EMPTY_GUID) != EMPTY_GUID:
            values["lineType"] = "Item"
    data.update(values)
    data["documentId"] = doc.id
    data["discountAppliedBeforeTax"] = True  # prices exclude VAT in the emulated companies
    if "sequence" in values:
        if any(r.data["sequence"] == values["sequence"] for r in existing):
            raise dialog(LINE_EXISTS)
    else:
        data["sequence"] = (
            max((r.data["sequence"] for r in existing), default=0) // 10000 + 1
        ) * 10000
    _validate_line_object(company, data, values)
    _line_amounts(company, data, values, sales)
    row = lines.insert(data)
    dims = navs.get("dimensionSetLines")
    if dims is not None:
        if not isinstance(dims, list):
            raise BCError(400, "BadRequest", "Invalid Request Body")
        parent_type = line_parent_type(doc, sales)
        for d in dims:
            dv, _ = parse_body(DIMENSION_SET_LINE, d)
            add_dimension(company, row, parent_type, dv)
    recompute_totals(company, doc, sales=sales)
    return row


def update_line(
    company: Company, doc: Row, row: Row, values: dict[str, Any], *, sales: bool
) -> None:
    if doc.data.get("_posted"):
        raise dialog(posted_text(doc))
    if "documentId" in values and values["documentId"] != row.data["documentId"]:
        raise dialog('The value for "documentId" cannot be modified.')
    if "sequence" in values and values["sequence"] != row.data["sequence"]:
        # The credit memo lines page words it without quotes (APIV2SalesCreditMemLines.Page.al).
        quoted = "sequence" if is_credit_memo(doc) else '"sequence"'
        raise dialog(
            f"The value for {quoted} cannot be modified. Delete and insert the line again."
        )
    old_number = row.data["lineObjectNumber"]
    if "lineObjectNumber" in values and old_number and values["lineObjectNumber"] != old_number:
        raise dialog('The value for "lineObjectNumber" cannot be modified.')
    data = dict(row.data)
    data.update(values)
    if "lineObjectNumber" in values or "lineType" in values or "accountId" in values:
        if "lineObjectNumber" in values and "accountId" not in values:
            data["accountId"] = EMPTY_GUID
        _validate_line_object(company, data, values)
    _line_amounts(company, data, values, sales)
    _, lines, _ = _doc_table(company, doc, sales)
    lines.update(row, {k: v for k, v in data.items() if row.data.get(k) != v})
    recompute_totals(company, doc, sales=sales)


def delete_line(company: Company, doc: Row, row: Row, *, sales: bool) -> None:
    if doc.data.get("_posted"):
        raise dialog(posted_text(doc))
    for entry in company.dim_set.find_all("parentId", row.id):
        company.dim_set.delete(entry)
    _, lines, _ = _doc_table(company, doc, sales)
    lines.delete(row)
    recompute_totals(company, doc, sales=sales)


def recompute_totals(company: Company, doc: Row, *, sales: bool) -> None:
    """Header totals from the lines; an invoice discount is spread over lines by amount."""
    headers, lines, _ = _doc_table(company, doc, sales)
    rows = [r for r in lines_of(company, doc.id, sales=sales) if r.data["lineType"] != "Comment"]
    base = sum(r.data["amountExcludingTax"] for r in rows)
    inv_disc = round(doc.data.get("discountAmount", 0) or 0, 2)
    total_excl = total_tax = 0.0
    for r in rows:
        excl = r.data["amountExcludingTax"]
        alloc = round(inv_disc * excl / base, 2) if base else 0.0
        net = round(excl - alloc, 2)
        net_tax = round(net * r.data["taxPercent"] / 100, 2)
        changes = {
            "invoiceDiscountAllocation": norm_number(alloc),
            "netAmount": norm_number(net),
            "netTaxAmount": norm_number(net_tax),
            "netAmountIncludingTax": norm_number(net + net_tax),
        }
        if any(r.data[k] != v for k, v in changes.items()):
            lines.update(r, changes, touch=False)
        total_excl += net
        total_tax += net_tax
    totals = {
        "totalAmountExcludingTax": norm_number(round(total_excl, 2)),
        "totalTaxAmount": norm_number(round(total_tax, 2)),
        "totalAmountIncludingTax": norm_number(round(total_excl + total_tax, 2)),
    }
    if sales and not is_credit_memo(doc):  # credit memos have no remainingAmount field
        totals["remainingAmount"] = totals["totalAmountIncludingTax"]
    if any(doc.data.get(k) != v for k, v in totals.items()):
        headers.update(doc, totals)


def post_sales_invoice(company: Company, row: Row) -> None:
    """``Microsoft.NAV.post``: validate like BC's posting, then number from the posted series."""
    d = row.data
    # [BCApps] APIV2SalesInvoices.Page.al, Post → GetDraftInvoice: refused on the aggregate's
    # Posted flag, not on its status; a released draft (status Open) is posted like any draft.
    if d["_posted"]:
        raise dialog(DRAFT_ONLY)
    _check_approval(company, d, company.sales_invoice_approval, "Sales Invoice")
    # [BCApps] SalesPost.Codeunit.al, OnRun → CheckTotalInvoiceAmount (before CheckAndUpdate):
    # an invoice whose total line amount and total incl. VAT are both negative is refused with
    # TotalInvoiceAmountNegativeErr. Credit memos are not checked (only Invoice and Order).
    if d["totalAmountExcludingTax"] < 0 and d["totalAmountIncludingTax"] < 0:
        raise dialog(NEGATIVE_INVOICE)
    _check_postable(company, row, "Invoice", blocked=("All", "Invoice"))
    company.sales_invoices.update(
        row,
        {
            "number": company.next_number("posted_sales_invoice"),
            "status": OPEN,
            "_posted": True,
            "_draftNumber": d["number"],
        },
    )


def _check_approval(
    company: Company, d: dict[str, Any], workflow_enabled: bool, caption: str
) -> None:
    doc_status = d.get("_docStatus", DOC_OPEN)
    # [BCApps] SalesHeader.Table.al SendToPosting → IsApprovedForPosting →
    # ApprovalsMgmt.Codeunit.al PrePostApprovalCheckSales: with an enabled approval workflow an
    # Open document fails with SalesPrePostCheckErr ("Sales %1 %2 must be approved …", %1 the
    # document type). A Pending Approval document passes that check and Sales-Post's
    # ReleaseSalesDocument skips it; the AL does not say plainly that it is refused further on,
    # so the emulator takes the stricter reading and refuses it too.
    if doc_status == DOC_PENDING_APPROVAL or (workflow_enabled and doc_status == DOC_OPEN):
        raise dialog(
            f"{caption} {d['number']} must be approved and released before you can "
            "perform this action."
        )


def _check_postable(company: Company, row: Row, doc_type: str, *, blocked: tuple[str, ...]) -> None:
    """What Sales-Post checks on the customer, the lines and the dimensions."""
    d = row.data
    cust = company.customers.find("number", d["customerNumber"])
    if cust is None:
        raise record_not_found("Customer", f"No.='{d['customerNumber']}'")
    c = cust.data
    # [BCApps] Customer.Table.al CheckBlockedCustOnDocs: "All" blocks every document, "Invoice"
    # blocks quotes, orders and invoices (not credit memos).
    if c["blocked"] in blocked:
        raise dialog(
            f"You cannot post this type of document when Customer {c['number']} is blocked with "
            f"type {c['blocked']}"
        )
    lines = lines_of(company, row.id, sales=True)
    postable = [r for r in lines if r.data["lineType"] != "Comment"]
    if not postable:
        raise dialog("There is nothing to post.")
    # No posting-group check here: the draft copied the customer's groups when it was made, and
    # the create already refused a customer without them (SalesHeader.Table.al, see
    # _new_sales_header). Groups removed from the customer later do not reach the header.
    for r in postable:
        number = r.data["lineObjectNumber"]
        if not number:
            raise BCError(
                400,
                "Application_FieldValidationException",
                f"No. must have a value in Sales Line: Document Type={doc_type}, "
                f"Document No.={d['number']}, "
                f"Line No.={r.data['sequence']}. It cannot be zero or empty.",
            )
        if company.gl_accounts.find("number", number) is None:  # approximated (posting's Get)
            raise record_not_found("G/L Account", f"No.='{number}'")
    _check_dimensions(company, [row, *lines])


def post_purchase_invoice(company: Company, row: Row) -> None:
    if row.data["status"] != DRAFT:
        raise dialog("The action can be applied to a draft invoice only.")
    lines = lines_of(company, row.id, sales=False)
    if not [r for r in lines if r.data["lineType"] != "Comment"]:
        raise dialog("There is nothing to post.")
    _check_dimensions(company, [row, *lines])
    company.purchase_invoices.update(
        row,
        {"number": company.next_number("posted_purchase_invoice"), "status": OPEN, "_posted": True},
    )


def _check_dimensions(company: Company, parents: list[Row]) -> None:
    for parent in parents:
        for entry in company.dim_set.find_all("parentId", parent.id):
            val = company.dimension_values.get(entry.data["valueId"])
            if val is not None and val.data.get("_blocked"):
                dim = company.dimensions.get(entry.data["id"])
                dim_code = dim.data["code"] if dim else "?"
                # approximated text of DimMgt's blocked-value check
                raise dialog(f"Dimension Value {dim_code} - {val.data['code']} is blocked.")


# ---- dimension set lines ------------------------------------------------------------------------

DIM_EXISTS = (
    "The dimension set line already exists. Check existing dimension set lines and the default "
    "dimension set lines on the parent."
)


def render_dimension(company: Company, entry: Row) -> dict[str, Any]:
    e = entry.data
    dim = company.dimensions.get(e["id"])
    val = company.dimension_values.get(e["valueId"])
    return {
        "id": e["id"],
        "code": dim.data["code"] if dim else e.get("code", ""),
        "consolidationCode": dim.data["consolidationCode"] if dim else "",
        "parentId": e["parentId"],
        "parentType": e["parentType"],
        "displayName": dim.data["displayName"] if dim else "",
        "valueId": e["valueId"],
        "valueCode": val.data["code"] if val else e.get("valueCode", ""),
        "valueConsolidationCode": val.data["consolidationCode"] if val else "",
        "valueDisplayName": val.data["displayName"] if val else "",
    }


def _dim_value(company: Company, dim: Row, values: dict[str, Any]) -> Row:
    """Texts from [BCApps] page 30022 "APIV2 - Dimension Set Lines"."""
    if values.get("valueId", EMPTY_GUID) != EMPTY_GUID:
        val = company.dimension_values.get(values["valueId"])
        if val is None or val.data["dimensionId"] != dim.id:
            raise dialog('The "valueId" does not match to a Dimension Value.')
        if values.get("valueCode") and values["valueCode"] != val.data["code"]:
            raise dialog(
                'The values of the "dimensionCode" field and the "dimensionId" field do not '
                "refer to the same Dimension Value."
            )
        return val
    val = company.dimension_value(dim.id, values["valueCode"])
    if val is None:
        raise dialog('The "valueCode" does not match to a Dimension Value.')
    return val


def add_dimension(company: Company, parent: Row, parent_type: str, values: dict[str, Any]) -> Row:
    """POST …/dimensionSetLines (bc-api §4.9 rules and texts)."""
    has_id = values.get("id", EMPTY_GUID) != EMPTY_GUID
    if not has_id and not values.get("code"):
        raise dialog('The "id" or "code" field must be filled in.')
    if values.get("valueId", EMPTY_GUID) == EMPTY_GUID and not values.get("valueCode"):
        raise dialog('The "valueId" or "valueCode" field must be filled in.')
    if has_id:
        dim = company.dimensions.get(values["id"])
        if dim is None:
            raise dialog('The "id" does not match to a Dimension.')
        if values.get("code") and values["code"] != dim.data["code"]:
            raise dialog("The dimension field values do not match to a specific Dimension.")
    else:
        dim = company.dimension_by_code(values["code"])
        if dim is None:
            raise dialog('The "code" does not match to a Dimension.')
    val = _dim_value(company, dim, values)
    key = f"{parent.id}:{dim.id}"
    if company.dim_set.get(key) is not None:
        raise dialog(DIM_EXISTS)
    entry = company.dim_set.insert(
        {
            "parentId": parent.id,
            "parentType": parent_type,
            "id": dim.id,
            "valueId": val.id,
            "code": dim.data["code"],
            "valueCode": val.data["code"],
        },
        key,
    )
    _after_dimension_change(company, parent, parent_type)
    return entry


def update_dimension(
    company: Company, parent: Row, parent_type: str, entry: Row, values: dict[str, Any]
) -> None:
    if ("id" in values and values["id"] != entry.data["id"]) or (
        "code" in values and values["code"] != render_dimension(company, entry)["code"]
    ):
        raise dialog('The "id" and "code" fields cannot be modified.')
    if "valueId" in values or "valueCode" in values:
        dim = company.dimensions.get(entry.data["id"])
        if dim is None:
            raise dialog('The "code" does not match to a Dimension.')
        val = _dim_value(company, dim, values)
        company.dim_set.update(entry, {"valueId": val.id, "valueCode": val.data["code"]})
        _after_dimension_change(company, parent, parent_type)


def delete_dimension(company: Company, parent: Row, parent_type: str, entry: Row) -> None:
    company.dim_set.delete(entry)
    _after_dimension_change(company, parent, parent_type)


def _after_dimension_change(company: Company, parent: Row, parent_type: str) -> None:
    """A new dimension set id changes the parent record (new ETag); headers sync shortcut dims."""
    table: Table = {
        "Sales_x0020_Invoice": company.sales_invoices,
        "Sales_x0020_Invoice_x0020_Line": company.sales_lines,
        "Sales_x0020_Credit_x0020_Memo": company.sales_credit_memos,
        "Sales_x0020_Credit_x0020_Memo_x0020_Line": company.sales_lines,
        "Purchase_x0020_Invoice": company.purchase_invoices,
        "Purchase_x0020_Invoice_x0020_Line": company.purchase_lines,
    }[parent_type]
    changes: dict[str, Any] = {}
    if parent_type in (
        "Sales_x0020_Invoice",
        "Sales_x0020_Credit_x0020_Memo",
        "Purchase_x0020_Invoice",
    ):
        setup = next(iter(company.gl_setup), None)
        for n in (1, 2):
            dim_code = setup.data[f"shortcutDimension{n}Code"] if setup else ""
            dim = company.dimension_by_code(dim_code) if dim_code else None
            entry = company.dim_set.get(f"{parent.id}:{dim.id}") if dim else None
            val = company.dimension_values.get(entry.data["valueId"]) if entry else None
            changes[f"shortcutDimension{n}Code"] = val.data["code"] if val else ""
    table.update(parent, changes)


def blank_to_enum(value: str) -> str:
    return value or BLANK


# ---- purchase invoices (seeded) -----------------------------------------------------------------


def create_purchase_invoice(
    company: Company,
    data: dict[str, Any],
    lines: list[dict[str, Any]],
    line_dims: list[dict[str, str]],
    header_dims: dict[str, str],
) -> Row:
    """Insert a purchase invoice built by the seeder (values already in stored form)."""
    doc = PURCHASE_INVOICE.defaults()
    doc.update(data)
    doc["_posted"] = doc["status"] != DRAFT
    row = company.purchase_invoices.insert(doc)
    for ld, dims in zip(lines, line_dims, strict=True):
        line = PURCHASE_INVOICE_LINE.defaults()
        line.update(ld)
        line["documentId"] = row.id
        _validate_line_object(company, line, ld)
        _line_amounts(company, line, ld, sales=False)
        lrow = company.purchase_lines.insert(line)
        for dim_code, value_code in dims.items():
            add_dimension(
                company,
                lrow,
                "Purchase_x0020_Invoice_x0020_Line",
                {"code": dim_code.upper(), "valueCode": value_code.upper()},
            )
    for dim_code, value_code in header_dims.items():
        add_dimension(
            company,
            row,
            "Purchase_x0020_Invoice",
            {"code": dim_code.upper(), "valueCode": value_code.upper()},
        )
    recompute_totals(company, row, sales=False)
    if "lastModifiedDateTime" in data:  # a seeded timestamp wins over the ones set on the way
        company.purchase_invoices.update(
            row, {"lastModifiedDateTime": data["lastModifiedDateTime"]}, touch=False
        )
    return row


# ---- cancelling a posted purchase invoice -------------------------------------------------------
# [BCApps] Purchases/History/CorrectPostedPurchInvoice.Codeunit.al (codeunit 1313), labels:
PAID = "Paid"
CANCELED = "Canceled"
CORRECTIVE = "Corrective"
CANCEL_PAID = (
    "You cannot cancel this posted purchase invoice because it is fully or partially paid.\\"
    "To reverse a paid purchase invoice, you must manually create a purchase credit memo."
)
CANCEL_TWICE = (
    "You cannot cancel this posted purchase invoice because it has already been canceled."
)
CANCEL_CORRECTIVE = (
    "You cannot cancel this posted purchase invoice because it represents a correction of a "
    "credit memo."
)
CANCEL_NOT_POSTED = "You cannot correct or cancel this type of document."


def cancel_purchase_invoice(company: Company, row: Row, *, modified_at: str | None = None) -> Row:
    """Cancel a posted purchase invoice the way BC's "Cancel" action does; returns the posted
    corrective credit memo.

    * Only a posted invoice, not paid (``TestIfInvoiceIsPaid``), not cancelled before
      (``TestIfInvoiceIsCorrectedOnce``), not itself a correction
      (``TestIfInvoiceIsNotCorrectiveDoc``): CorrectPostedPurchInvoice.Codeunit.al, texts above
      (an AL ``Error()``).
    * ``OnRun`` copies the invoice into a credit memo with ``Applies-to Doc. No.`` = the invoice,
      posts it (closing the invoice's vendor ledger entry) and ``SetTrackInfoForCancellation``
      inserts a "Cancelled Document" (Utilities/CancelledDocument.Table.al).
    * The API row (table "Purch. Inv. Entity Aggregate", page 30042) follows: the aggregator
      subscribes to the vendor ledger entry and to the "Cancelled Document" insert
      (Integration/Entity/PurchInvAggregator.Codeunit.al, ``SetStatusOptionFromCancelledDocument``
      → ``UpdateStatusIfChanged``); ``SetStatusOptionFromPurchaseInvoiceHeader`` puts
      ``Cancelled`` before ``Closed``, so the status is ``Canceled``; the status change is a
      ``Modify(true)`` of the aggregate row, so ``lastModifiedDateTime`` (= ``SystemModifiedAt``,
      APIV2PurchaseInvoices.Page.al) moves to the time of that modify.
    * ``modified_at``: that time, when it is not "now". The modify happens inside the posting
      transaction and the row is seen only at its final ``Commit()``; a long transaction makes
      a row appear with a ``lastModifiedDateTime`` older than the moment it became visible.
    """
    if not row.data.get("_posted"):
        raise dialog(CANCEL_NOT_POSTED)
    status = row.data["status"]
    if status == CANCELED:
        raise dialog(CANCEL_TWICE)
    if status == CORRECTIVE:
        raise dialog(CANCEL_CORRECTIVE)
    if status == PAID:
        raise dialog(CANCEL_PAID)
    lines = lines_of(company, row.id, sales=False)
    memo = company.purchase_credit_memos.insert(
        {
            "number": company.next_number("posted_purchase_credit_memo"),
            "appliesToInvoiceId": row.id,
            "appliesToInvoiceNumber": row.data["number"],
            "vendorNumber": row.data.get("vendorNumber", ""),
            "postingDate": row.data.get("postingDate"),
            "totalAmountIncludingTax": row.data.get("totalAmountIncludingTax", 0),
            "lineIds": [ln.id for ln in lines],
            "status": CORRECTIVE,
        }
    )
    company.purchase_invoices.update(
        row,
        {"status": CANCELED, "_cancelledBy": memo.data["number"]},
        touch=modified_at is None,
    )
    if modified_at is not None:
        company.purchase_invoices.update(row, {"lastModifiedDateTime": modified_at}, touch=False)
    return memo
