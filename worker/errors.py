"""Failure classes shared by handlers and the consumer, and the catalogue of stable error codes.

A handler raises one of these; the consumer maps each class to exactly one action:
``InvalidEvent`` and ``Permanent`` → dead letter at once; ``Transient`` → in-process retry,
then a hop on the retry ladder; anything else → treated as transient (never lost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    """What an error code means for a Moment admin: a short title and what to do about it."""

    title: str
    fix: str
    transient: bool = False


CATALOGUE: dict[str, ErrorInfo] = {
    "EVENT-INVALID": ErrorInfo(
        "The event from Moment did not follow the event contract.",
        "Nothing to change in Business Central or in the settings: Moment's developers must "
        "fix the event; support can replay it afterwards.",
    ),
    "EVENT-UNKNOWN-TYPE": ErrorInfo(
        "The event type is not one the integration handles.",
        "Moment's developers should check the routing key and the event type.",
    ),
    "CONFIG-MISMATCH": ErrorInfo(
        "The event belongs to another organization than its configuration.",
        "Moment's developers should check the event's organization id.",
    ),
    "BC-CREDENTIALS-REJECTED": ErrorInfo(
        "Business Central or Microsoft Entra ID rejected the integration's credentials.",
        "Check the tenant ID and client secret in the integration settings, and that the app "
        "is listed and enabled on Business Central's 'Microsoft Entra Applications' page.",
        transient=True,
    ),
    "BC-THROTTLED": ErrorInfo(
        "Business Central asked us to slow down (too many requests).",
        "Nothing to do: the integration retries by itself.",
        transient=True,
    ),
    "BC-UNAVAILABLE": ErrorInfo(
        "Business Central could not be reached or had a temporary problem.",
        "Nothing to do unless it lasts: the integration retries by itself. If it persists, "
        "check Business Central's service status.",
        transient=True,
    ),
    "BC-BUSY": ErrorInfo(
        "Another worker was exporting the same object at the same moment.",
        "Nothing to do: the integration retries by itself.",
        transient=True,
    ),
    "BC-ENVIRONMENT-MISSING": ErrorInfo(
        "The Business Central environment does not exist.",
        "Correct the environment name in the integration settings.",
    ),
    "BC-COMPANY-MISSING": ErrorInfo(
        "The company does not exist in the Business Central environment.",
        "Correct the company name in the integration settings; write it as Business Central "
        "shows it.",
    ),
    "BC-SERVICE-NOT-PUBLISHED": ErrorInfo(
        "A page the integration needs is not published as a web service in Business Central.",
        "Publish the named page on Business Central's 'Web Services' page under the named "
        "service name.",
    ),
    "BC-POSTING-GROUP-MISSING": ErrorInfo(
        "A posting group chosen in the integration settings does not exist in Business Central.",
        "Add the posting group in Business Central or choose another one in the integration "
        "settings, then ask support to replay the failed items.",
    ),
    "BC-DIMENSION-MISSING": ErrorInfo(
        "A dimension chosen in the integration settings does not exist in Business Central.",
        "Add the dimension in Business Central or choose another one in the integration settings.",
    ),
    "BC-DIMENSION-VALUE-MISSING": ErrorInfo(
        "A dimension value (project or department) does not exist in Business Central.",
        "Create the value in Business Central, or switch on project export so the "
        "integration creates projects itself; check the department codes in Moment. Then ask "
        "support to replay the failed items.",
    ),
    "BC-ACCOUNT-MISSING": ErrorInfo(
        "An invoice line uses a G/L account that does not exist in Business Central.",
        "Add the account in Business Central's chart of accounts, or correct the account "
        "number on the article in Moment. Then ask support to replay the invoice.",
    ),
    "BC-CUSTOMER-MISSING": ErrorInfo(
        "The invoice's customer does not exist in Business Central.",
        "Create the customer in Business Central, or switch on customer export so the "
        "integration creates customers itself. Then ask support to replay the invoice.",
    ),
    "BC-DEPARTMENT-MISSING": ErrorInfo(
        "An invoice line's project has no department code in Moment.",
        "Set the project's department (or its tag in the configured tag group) in Moment, "
        "then ask support to replay the invoice.",
    ),
    # Not a failure: the consumer acks an invoice in this state as "waiting" (no dead letter).
    "BC-INVOICE-AWAITING-APPROVAL": ErrorInfo(
        "An invoice is waiting for approval in Business Central and is not posted yet.",
        "If nobody has yet, send the invoice for approval in Business Central (Send Approval "
        "Request on the sales invoice) and have it approved. Once it is approved, ask support "
        "to export the invoice again: the integration then posts it and reports it to Moment.",
    ),
    "BC-CUSTOMER-NOS-NOT-MANUAL": ErrorInfo(
        "Business Central does not accept customer numbers from Moment: its customer number "
        "series does not allow manual numbers.",
        "In Business Central open Sales & Receivables Setup and look up the number series in "
        "the Customer Nos. field; on the No. Series page turn on Manual Nos. for that series. "
        "The integration creates each customer under its Moment customer number. Then ask "
        "support to replay the failed items.",
    ),
    # Warnings: the object was transferred without the value (worker.events.handlers.DataWarning).
    "BC-VAT-NUMBER-LEFT-OUT": ErrorInfo(
        "A customer's VAT registration number was not accepted by Business Central and was left "
        "out.",
        "Correct the VAT number on the customer in Moment: Business Central takes at most 20 "
        "characters and checks the number against the VAT Registration No. Formats of the "
        "customer's country (in Business Central: Countries/Regions, VAT Reg. No. Formats). "
        "Enter the VAT number there, not the organization number. The customer's next change "
        "in Moment sends it again.",
    ),
    "BC-PHONE-LEFT-OUT": ErrorInfo(
        "A customer's phone number contains letters, which Business Central does not accept; it "
        "was left out.",
        "Enter only the number in the customer's phone field in Moment (digits, spaces, +, - "
        "and parentheses); put extensions or notes such as 'ext.' or 'växel' elsewhere. The "
        "customer's next change in Moment sends it again.",
    ),
    "BC-ADDRESS-FROM-POST-CODES": ErrorInfo(
        "Business Central replaced part of a customer's address from its Post Codes list.",
        "Compare the customer's address in Business Central with Moment. Correct the post code "
        "or city in Moment, or the entry on Business Central's Post Codes page, then change the "
        "customer in Moment to send it again.",
    ),
    "BC-CREDITED-INVOICE-MISSING": ErrorInfo(
        "A credit note is waiting for the invoice it credits, which is not posted in Business "
        "Central yet.",
        "Usually nothing: the credit note is posted, applied to the invoice, as soon as the "
        "invoice is posted. If it lasts, check that the invoice reached Business Central (it may "
        "have failed itself, or wait as a draft or for approval there), post it, then ask "
        "support to replay the credit note. It is never posted without its invoice.",
        transient=True,
    ),
    "BC-CREDITED-INVOICE-OTHER-CUSTOMER": ErrorInfo(
        "A credit note credits an invoice of another customer.",
        "Correct the credit note in Moment (its customer, or the invoice it credits), then ask "
        "support to replay it.",
    ),
    "BC-CREDITED-INVOICE-CLOSED": ErrorInfo(
        "A credit note credits an invoice that is already paid, fully credited or canceled in "
        "Business Central, so it cannot be applied to it.",
        "Decide in Business Central how the customer gets the amount back: for example post a "
        "credit memo there by hand and apply it to a refund or to another invoice.",
    ),
    # Not a failure, like BC-INVOICE-AWAITING-APPROVAL: acked as "waiting".
    "BC-CREDIT-NOTE-AWAITING-APPROVAL": ErrorInfo(
        "A credit note is waiting for approval in Business Central and is not posted yet.",
        "If nobody has yet, send the credit memo for approval in Business Central (Send Approval "
        "Request on the sales credit memo) and have it approved. Once it is approved, ask "
        "support to export the credit note again: the integration then posts it and reports it "
        "to Moment.",
    ),
    "BC-VALIDATION": ErrorInfo(
        "Business Central rejected the data.",
        "Read Business Central's message below, correct the data in Moment or in Business "
        "Central, then ask support to replay it.",
    ),
    "CONFIG-EXPENSES-INCOMPLETE": ErrorInfo(
        "Expense import is switched on, but its settings are incomplete.",
        "Fill in the project dimension and the from date of the expense import in the "
        "integration settings and save; expense import resumes then.",
    ),
    "CONFIG-PAYMENTS-INCOMPLETE": ErrorInfo(
        "Payment import is switched on, but its from date is missing.",
        "Fill in the from date of the payment import in the integration settings and save; "
        "payment import resumes then.",
    ),
    "DELIVERY-LIMIT": ErrorInfo(
        "The event was delivered many times without an outcome (workers crashed or lost their "
        "connection while handling it).",
        "Nothing to change on your side. Support should look at the integration's logs for "
        "this event, then replay it.",
    ),
    "STORE-UNAVAILABLE": ErrorInfo(
        "The integration's own database could not be reached for a while.",
        "Nothing to change on your side: the event is retried on its own once the database is "
        "back. Support should check the database if this lasts.",
        transient=True,
    ),
    "INTERNAL-ERROR": ErrorInfo(
        "The integration hit an unexpected error.",
        "Nothing to change on your side. Support should look at the integration's logs for "
        "this event and replay it once fixed.",
        transient=True,
    ),
}


# The one answer for a code the catalogue does not know (a newer worker's code read by an older
# one, a hand-made dead letter): the digest, the dead-letter view and the demo all show this.
UNKNOWN = ErrorInfo(
    "Unknown error code.",
    "Read the message in the examples. If it does not say what to change, ask support to look "
    "at the integration's logs for this event.",
)


def info(code: str | None) -> ErrorInfo:
    """The catalogue entry of a code; a code it does not know gets :data:`UNKNOWN`."""
    return CATALOGUE.get(code or "", UNKNOWN)


class HandlerError(Exception):
    """Base of every failure a handler reports on purpose."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        bc_status: int | None = None,
        bc_code: str | None = None,
        subject: str | None = None,
        missing: Sequence[Mapping[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.bc_status = bc_status
        self.bc_code = bc_code
        self.subject = subject  # the object concerned, e.g. "invoice 1864"
        # What BC lacks, for the healer to look for: {"kind": "gl_account", "value": "9999"}
        # (kinds: see worker.ops.heal.FACT_KINDS; a dimension value also has "dimension").
        self.missing = tuple(dict(m) for m in missing)


class InvalidEvent(HandlerError):
    """The message is not a valid event (bad JSON, schema, unknown type): dead letter at once."""

    def __init__(self, message: str, *, code: str = "EVENT-INVALID") -> None:
        super().__init__(code, message)


class Permanent(HandlerError):
    """Retrying cannot help (e.g. a missing posting group): dead letter and notify."""


class Transient(HandlerError):
    """Retrying later may help (network, 429, 5xx, a concurrent create)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        notify: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(code, message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after
        # Rejected credentials are parked on the ladder like any transient failure, but a
        # person must hear about them at once.
        self.notify = notify
