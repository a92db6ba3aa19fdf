"""How the sales document exports recognise BC's answers (pure, no I/O).

Every recognition of a BC error the document flow acts on lives here, in one small place, on
top of :mod:`worker.bc.errors`: by BC's error code and structure (the field a TestField names,
the table a missing record is in) where BC gives one, else by the AL label's English text (the
client asks for English on every request and ``$batch`` part, bc-api.md Corrections 10). A
translated or unknown answer is recognised as nothing, so it is never acted on wrongly.
"""

from __future__ import annotations

from worker.bc import BcError
from worker.bc.errors import (
    DATA_NOT_FOUND_FILTER,
    DIALOG,
    Label,
    facts,
    is_dialog,
    message_text,
    names_field,
)


def posting_groups_missing(exc: BcError) -> bool:
    """BC refused the draft because the customer has no posting groups: Customer.TestField on
    them when the draft is made (SalesHeader.Table.al), a field validation naming the field,
    "Gen. Bus. Posting Group must have a value in Customer: No.=50080. …"."""
    return names_field(exc, "Customer Posting Group", "Gen. Bus. Posting Group", table="Customer")


def approval_required(exc: BcError) -> bool:
    """BC refused the post because an approval workflow requires approval first
    (ApprovalsMgmt.Codeunit.al SalesPrePostCheckErr: "Sales Invoice 1001 must be approved and
    released before you can perform this action."; "Sales Credit Memo …" for a credit memo)."""
    return exc.code in (None, DIALOG) and Label.APPROVAL_REQUIRED.casefold() in (
        message_text(exc).casefold()
    )


def not_a_draft(exc: BcError) -> bool:
    """BC refused the post because the document is posted (APIV2SalesInvoices.Page.al
    DraftInvoiceActionErr / APIV2SalesCreditMemos.Page.al DraftCreditMemoActionErr, raised only
    for a posted document)."""
    return is_dialog(exc, Label.DRAFT_INVOICE_ONLY, Label.DRAFT_CREDIT_MEMO_ONLY)


def customer_missing(exc: BcError) -> bool:
    """BC's answer says the document's customer does not exist ("The sell-to customer cannot be
    found.", or a record-not-found naming the Customer table)."""
    if is_dialog(exc, Label.SELL_TO_CUSTOMER_NOT_FOUND, Label.BILL_TO_CUSTOMER_NOT_FOUND):
        return True
    found = facts(exc)
    return found.missing_record and (found.related_table or "").casefold() == "customer"


def account_missing(exc: BcError) -> bool:
    """A line's G/L account does not exist (the lines pages' AccountDoesNotExistErr, which does
    not name the account)."""
    return is_dialog(exc, Label.ACCOUNT_DOES_NOT_EXIST)


def invoice_not_posted(exc: BcError) -> bool:
    """BC refused a credit memo's ``invoiceId``: it is no posted invoice (a draft's, or gone)."""
    return is_dialog(exc, Label.INVOICE_ID_UNKNOWN)


def no_open_invoice_entry(exc: BcError) -> bool:
    """BC refused to post a credit memo: the invoice it applies to has no open entry for its
    customer (paid, fully credited or canceled meanwhile): GenJnlPostLine.Codeunit.al
    PrepareTempCustLedgEntry's FindFirst, "There is no Cust. Ledger Entry within the filter."
    (``Internal_DataNotFoundFilter``, a platform error whose code says it all)."""
    if exc.code == DATA_NOT_FOUND_FILTER:
        return True
    return exc.code is None and "cust. ledger entry" in message_text(exc).casefold()
