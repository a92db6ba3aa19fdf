"""How the sales document exports recognise BC's answers (pure, no I/O).

Every recognition of a BC error by what it says lives here, in one small place, so that it can
switch to BC's error codes and structure (see ``worker.bc.errors``) without touching the export
flow. The texts are BC's own labels, quoted from Microsoft's AL source next to each pattern.
"""

from __future__ import annotations

import re

from worker.bc import BcError

# Customer.TestField on the customer's groups when the draft is made (SalesHeader.Table.al):
# "Gen. Bus. Posting Group must have a value in Customer: No.=50080. It cannot be zero or empty."
_GROUPS_MISSING = re.compile(
    r"(Customer Posting Group|Gen\. Bus\. Posting Group) must have a value in Customer\b",
    re.IGNORECASE,
)
# ApprovalsMgmt.Codeunit.al SalesPrePostCheckErr: "Sales Invoice 1001 must be approved and
# released before you can perform this action." (an approval workflow is enabled; "Sales Credit
# Memo …" for a credit memo).
_APPROVAL_REQUIRED = re.compile(r"must be approved and released before you can perform")
# APIV2SalesInvoices.Page.al DraftInvoiceActionErr / APIV2SalesCreditMemos.Page.al
# DraftCreditMemoActionErr, raised when the document is posted.
_NOT_A_DRAFT = re.compile(r"The action can be applied to a draft (invoice|credit memo) only")
# APIV2SalesCreditMemos.Page.al InvoiceIdDoesNotMatchAnInvoiceErr: the invoiceId names no
# posted invoice (GetSalesInvoiceHeaderFromId finds Sales Invoice Headers only).
_INVOICE_ID_UNKNOWN = re.compile(r'The "invoiceId" does not match to an Invoice')
# GenJnlPostLine.Codeunit.al PrepareTempCustLedgEntry: FindFirst of the open customer ledger
# entry the credit memo applies to ("There is no Cust. Ledger Entry within the filter.").
_NO_OPEN_ENTRY = re.compile(r"There is no Cust\. Ledger Entry within the filter")


def posting_groups_missing(exc: BcError) -> bool:
    """BC refused the draft because the customer has no posting groups (a TestField text)."""
    return bool(_GROUPS_MISSING.search(exc.message or ""))


def approval_required(exc: BcError) -> bool:
    """BC refused the post because an approval workflow requires approval first."""
    return bool(_APPROVAL_REQUIRED.search(exc.message or ""))


def not_a_draft(exc: BcError) -> bool:
    """BC refused the post because the document is posted (the only reason for this text)."""
    return bool(_NOT_A_DRAFT.search(exc.message or ""))


def customer_missing(exc: BcError) -> bool:
    """BC's answer says the document's customer does not exist ("The sell-to customer cannot be
    found.", or a record-not-found naming the Customer table)."""
    text = (exc.message or "").lower()
    return "customer" in text and ("cannot be found" in text or "does not exist" in text)


def account_missing(exc: BcError) -> bool:
    """A line's G/L account does not exist ("Account does not exist.", the lines pages'
    AccountDoesNotExistErr, which does not name the account)."""
    return "account does not exist" in (exc.message or "").lower()


def invoice_not_posted(exc: BcError) -> bool:
    """BC refused a credit memo's ``invoiceId``: it is no posted invoice (a draft's, or gone)."""
    return bool(_INVOICE_ID_UNKNOWN.search(exc.message or ""))


def no_open_invoice_entry(exc: BcError) -> bool:
    """BC refused to post a credit memo: the invoice it applies to has no open entry for its
    customer (paid, fully credited or canceled meanwhile)."""
    return bool(_NO_OPEN_ENTRY.search(exc.message or ""))
