"""What ``make demo`` sends: the integration config and the sample Moment events."""

from __future__ import annotations

from typing import Any

from tests.support import factories as f

ORG = "demo-org"
MAIL_TO = "ekonomi@cronus.example"
USER_ID = "moment-user-1001"
# The month the demo's invoices are dated in (tests/support/factories.py: 2026-11-20): reconciled.
PERIOD = ("2026-11-01", "2026-11-30")
PAID_INVOICE = "1864"  # paid in part in BC during the demo
PAID_AMOUNT = 5000


def config_body(*, with_secret: bool = True) -> dict[str, Any]:
    """The dialog's fields as Moment sends them; without the secret a save keeps the stored one."""
    # The company name as users paste it from a BC URL: stored decoded, "CRONUS Sverige AB".
    body = f.dialog(
        notification_recipients=[{"email": MAIL_TO}, {"user_id": USER_ID}],
        notes=None,
        import_payments=True,
        payments_from_date=PERIOD[0],
    )
    if not with_secret:
        del body["client_secret"]
    return body


def event_body(type_: str, data: dict[str, Any]) -> bytes:
    """A CloudEvents envelope of the demo organization, as Moment publishes it."""
    return f.body(type_, data, org=ORG)


def sample_events() -> list[tuple[str, dict[str, Any]]]:
    """(type, data) in publish order; invoice 1866 fails on purpose (account 9999 is not in BC);
    credit note 1867 credits part of invoice 1864."""
    domestic = f.customer("10001", name="Nordisk Design AB", country="SE")
    abroad = f.customer(
        "20001",
        name="Fjordkraft Rådgivning AS",
        country="NO",
        currency_code="NOK",
        vat_number="NO987654321MVA",
        invoice_address={
            "line1": "Karl Johans gate 12",
            "line2": None,
            "postal_code": "0154",
            "city": "Oslo",
            "country_code": "NO",
        },
    )
    late = f.customer("30001", name="Sen Start AB", country="SE")
    portal = f.project("4007", name="Kundportal", department="200", cust=domestic)
    data = f.project("4008", name="Dataplattform", department="100", cust=domestic)
    line = {"unit_price": 1200.0, "discount_percent": 0, "account_number": "3010", "vat_code": "25"}
    return [
        ("moment.customer.created", {"customer": domestic}),
        ("moment.customer.created", {"customer": abroad}),
        ("moment.project.created", {"project": portal}),
        ("moment.project.created", {"project": data}),
        (
            "moment.invoice.created",
            {
                "invoice": f.invoice(
                    "1864",
                    cust=domestic,
                    lines=[
                        {
                            **line,
                            "description": "Konsulttimmar november",
                            "quantity": 10,
                            "project": portal,
                        },
                        {**line, "description": "Workshop", "quantity": 2, "project": portal},
                        {
                            **line,
                            "description": "Arkitekturgranskning",
                            "quantity": 4,
                            "project": data,
                        },
                    ],
                )
            },
        ),
        # A credit note for one workshop hour of invoice 1864: a credit memo applied to it.
        (
            "moment.invoice.created",
            {
                "invoice": f.invoice(
                    "1867",
                    cust=domestic,
                    kind="credit_note",
                    credited_invoice={"id": "i-1864", "number": "1864"},
                    lines=[
                        {
                            **line,
                            "description": "Kreditering workshop",
                            "quantity": -1,
                            "project": portal,
                        }
                    ],
                )
            },
        ),
        (
            "moment.invoice.created",
            {
                "invoice": f.invoice(
                    "1865",
                    cust=late,
                    lines=[{**line, "description": "Förstudie", "quantity": 3, "project": data}],
                )
            },
        ),
        # The customer of invoice 1865 arrives after it: the invoice created it from its snapshot.
        ("moment.customer.created", {"customer": late}),
        (
            "moment.invoice.created",
            {
                "invoice": f.invoice(
                    "1866",
                    cust=domestic,
                    lines=[
                        {
                            **line,
                            "description": "Licenser",
                            "quantity": 1,
                            "account_number": "9999",
                            "project": portal,
                        }
                    ],
                )
            },
        ),
    ]
