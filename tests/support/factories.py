"""Sample Moment events and integration configs shaped exactly like DESIGN §11, for tests,
benchmarks, the chaos soak and the demo."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.emulator.seed import DEMO
from worker.config.model import IntegrationConfig, parse_config

ORG = "org-acme"


def dialog(**over: Any) -> dict[str, Any]:
    """The help page's whole dialog for the emulator's demo company, every data object on."""
    body: dict[str, Any] = {
        "tenant_id": DEMO.tenant_id,
        "client_id": None,
        "client_secret": DEMO.client_secret,
        "environment": DEMO.environment,
        "company_name": "CRONUS%20Sverige%20AB",
        "export_customers": True,
        "customer_posting_groups": {
            "domestic": {"gen_bus_posting_group": "INRIKES", "customer_posting_group": "KUNDER"},
            "abroad": {"gen_bus_posting_group": "EXPORT", "customer_posting_group": "KUNDER-EXP"},
        },
        "export_projects": True,
        "project_dimension": "PROJEKT",
        "export_invoices": True,
        "department_dimension": "AVDELNING",
        "department_source": "department",
        "department_tag_group": None,
        "import_expenses": True,
        "expenses_from_date": "2026-01-01",
        "expense_activity": "Inköp",
        "expenses_billable": True,
        "notification_recipients": [{"user_id": "u-17"}, {"email": "ekonomi@example.se"}],
        "notes": "free text",
    }
    body.update(copy.deepcopy(over))
    return body


def exports_only(**over: Any) -> dict[str, Any]:
    """The dialog with the three exports on and nothing else (no expense import, no
    recipients): what export tests, the corpus, the soak and the bench run with."""
    return dialog(
        **{
            "import_expenses": False,
            "expenses_from_date": None,
            "expense_activity": None,
            "expenses_billable": None,
            "notification_recipients": [],
            "notes": None,
            **over,
        }
    )


def customer(number: str = "10006", *, country: str = "SE", **over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": f"c-{number}",
        "number": number,
        "name": f"Kund {number} AB",
        "organization_number": "556677-8899",
        "vat_number": "SE556677889901",
        "email": "billing@acme.se",
        "phone": "+46 8 123 45",
        "website": None,
        "currency_code": "SEK",
        "payment_terms_days": 30,
        "invoice_address": {
            "line1": "Storgatan 1",
            "line2": None,
            "postal_code": "111 22",
            "city": "Stockholm",
            "country_code": country,
        },
    }
    c.update(over)
    return c


def project(
    number: str = "4005",
    *,
    name: str = "Website relaunch",
    department: str | None = "200",
    tag_code: str | None = "200",
    cust: dict[str, Any] | None = None,
    **over: Any,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": f"p-{number}",
        "number": number,
        "name": name,
        "customer": cust or customer(),
        "department": (
            {"id": "d-1", "name": "Consulting", "external_number": department}
            if department is not None
            else None
        ),
        "tags": [{"group": "Avdelning", "name": "Consulting", "code": tag_code}]
        if tag_code
        else [],
    }
    p.update(over)
    return p


def invoice(
    number: str = "1864",
    *,
    cust: dict[str, Any] | None = None,
    lines: list[dict[str, Any]] | None = None,
    **over: Any,
) -> dict[str, Any]:
    c = cust or customer()
    inv: dict[str, Any] = {
        "id": f"i-{number}",
        "number": number,
        "invoice_date": "2026-11-20",
        "due_date": "2026-12-20",
        "currency_code": "SEK",
        "your_reference": "PO-77",
        "our_reference": "Anna",
        "customer": c,
        "lines": lines or [line(project(cust=c))],
    }
    inv.update(over)
    return inv


def line(project: dict[str, Any] | None, **over: Any) -> dict[str, Any]:
    """One invoice line: ten hours of consulting at 1,200 SEK on account 3010 (VAT 25)."""
    body: dict[str, Any] = {
        "description": "Consulting, November",
        "quantity": 10,
        "unit_price": 1200.0,
        "discount_percent": 0,
        "account_number": "3010",
        "vat_code": "25",
        "project": project,
    }
    body.update(over)
    return body


def now_iso() -> str:
    """CloudEvents ``time`` of an event made now (microseconds: events made one after the
    other are ordered, as Moment's are, for the sync ledger's newest-wins rule)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(
    type_: str,
    data: dict[str, Any],
    *,
    org: str = ORG,
    id_: str | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": id_ or str(uuid.uuid4()),
        "source": "/moment/test",
        "type": type_,
        "time": time or now_iso(),
        "organizationid": org,
        "datacontenttype": "application/json",
        "data": copy.deepcopy(data),
    }


def body(type_: str, data: dict[str, Any], **kw: Any) -> bytes:
    return json.dumps(envelope(type_, data, **kw)).encode()


def customer_event(number: str = "10006", **kw: Any) -> bytes:
    return body("moment.customer.created", {"customer": customer(number)}, **kw)


# --- a stored integration config (the store tests) -----------------------------------------
SECRET = "Qx8~k3.PLAINTEXT-client-secret-4711"


def config(**changes: Any) -> IntegrationConfig:
    """A parsed config with customers, projects, expenses and recipients (secret ``SECRET``)."""
    data: dict[str, Any] = {
        "tenant_id": "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f",
        "client_secret": SECRET,
        "environment": "Production",
        "company_name": "CRONUS%20Sverige%20AB",
        "export_customers": True,
        "customer_posting_groups": {
            "domestic": {"gen_bus_posting_group": "INRIKES", "customer_posting_group": "KUNDER"},
            "abroad": {"gen_bus_posting_group": "EXPORT", "customer_posting_group": "KUNDER-EXP"},
        },
        "export_projects": True,
        "project_dimension": "PROJEKT",
        "import_expenses": True,
        "expenses_from_date": "2026-01-01",
        "expense_activity": "Inköp",
        "expenses_billable": True,
        "notification_recipients": [{"user_id": "u-17"}, {"email": "ekonomi@example.se"}],
        "notes": "Set up by Anna",
    }
    data.update(changes)
    return parse_config(data)


def secret_of(stored: Any) -> str:
    assert stored is not None
    assert stored.config.client_secret is not None
    value: str = stored.config.client_secret.get_secret_value()
    return value
