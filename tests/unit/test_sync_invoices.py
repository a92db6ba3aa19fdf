"""The BC answers the invoice export recognises to repair what is missing (pure, no I/O).

The recognisers moved to worker.sync.bc_answers, shared by invoices and credit notes."""

from __future__ import annotations

import pytest

from worker.bc import BcValidationError
from worker.sync.bc_answers import approval_required as _approval_required
from worker.sync.bc_answers import customer_missing as _customer_missing
from worker.sync.bc_answers import not_a_draft as _not_a_draft
from worker.sync.bc_answers import posting_groups_missing as _posting_groups_missing


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("The sell-to customer cannot be found.  CorrelationId:  x.", True),
        ("The Customer does not exist. Identification fields and values: No.='10009'", True),
        ("Account does not exist.", False),
        ("The sell-to customer values do not match to a specific Customer.", False),
    ],
)
def test_customer_missing_is_recognised(message: str, expected: bool) -> None:
    assert _customer_missing(BcValidationError(message, status=400)) is expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Customer Posting Group must have a value in Customer: No.=C1. It cannot be zero or "
            "empty.",
            True,
        ),
        (
            "Gen. Bus. Posting Group must have a value in Customer: No.=C1. It cannot be zero or "
            "empty.",
            True,
        ),
        # A line's own group at the post is no customer repair (the draft copied the groups).
        (
            "Gen. Bus. Posting Group must have a value in Sales Line: Document Type=Invoice, "
            "Document No.=S-INV1, Line No.=10000. It cannot be zero or empty.",
            False,
        ),
        ("No. must have a value in Sales Line: Document Type=Invoice.", False),
        ("You cannot post this type of document when Customer 30000 is blocked.", False),
    ],
)
def test_missing_posting_groups_are_recognised(message: str, expected: bool) -> None:
    assert _posting_groups_missing(BcValidationError(message, status=400)) is expected


@pytest.mark.parametrize(
    ("message", "approval", "posted"),
    [
        (
            "Sales Invoice S-INV100001 must be approved and released before you can perform "
            "this action.  CorrelationId:  x.",
            True,
            False,
        ),
        ("The action can be applied to a draft invoice only.  CorrelationId:  x.", False, True),
        ("The action can be applied to a posted invoice only.", False, False),
        ("There is nothing to post.", False, False),
    ],
)
def test_post_refusals_are_told_apart(message: str, approval: bool, posted: bool) -> None:
    """Approval required (ApprovalsMgmt.Codeunit.al) → waiting; "draft invoice only"
    (APIV2SalesInvoices.Page.al GetDraftInvoice) → already posted; anything else stands."""
    exc = BcValidationError(message, status=400)
    assert (_approval_required(exc), _not_a_draft(exc)) == (approval, posted)
