"""The demo world (used by tests, benchmarks and ``bc-sync demo``): a Swedish CRONUS company."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoCredentials:
    tenant_id: str
    tenant_domain: str
    client_id: str
    client_secret: str
    environment: str
    company_name: str
    company_id: str
    other_company_name: str
    other_company_id: str


DEMO = DemoCredentials(
    tenant_id="7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e",
    tenant_domain="cronus.example",
    client_id="3f1b6c2e-8d4a-4e9b-a7c5-1d2e3f4a5b6c",
    client_secret="demo-secret-not-for-production",
    environment="Production",
    company_name="CRONUS Sverige AB",
    company_id="0f6e4c6a-2b1d-4e8f-9a3c-5d7e9f1a2b3c",
    other_company_name="CRONUS International Ltd.",
    other_company_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
)

# Fixed ids make test output and state dumps stable.
PROJEKT_ID = "d1000000-0000-4000-8000-000000000001"
AVDELNING_ID = "d1000000-0000-4000-8000-000000000002"
KOSTNADSSTALLE_ID = "d1000000-0000-4000-8000-000000000003"


def _sverige() -> dict[str, Any]:
    return {
        "name": DEMO.company_name,
        "id": DEMO.company_id,
        "country": "SE",
        "currency": "SEK",
        "currency_symbol": "kr",
        "currencies": ["EUR", "USD", "NOK", "DKK", "GBP"],
        "company_information": {
            "addressLine1": "Sveavägen 1",
            "city": "Stockholm",
            "postalCode": "111 57",
            "phoneNumber": "+46 8 123 456 00",
            "email": "info@cronus.example",
            "taxRegistrationNumber": "SE556000000001",
        },
        "dimensions": [
            {
                "code": "PROJEKT",
                "name": "Projekt",
                "id": PROJEKT_ID,
                "values": [
                    {"code": "4001", "name": "Intern utveckling"},
                    {"code": "4005", "name": "Webbplats relansering"},
                    {"code": "4006", "name": "Molnmigrering"},
                ],
            },
            {
                "code": "AVDELNING",
                "name": "Avdelning",
                "id": AVDELNING_ID,
                "values": [
                    {"code": "100", "name": "Administration"},
                    {"code": "200", "name": "Konsulting"},
                    {"code": "300", "name": "Försäljning"},
                ],
            },
            {
                "code": "KOSTNADSSTÄLLE",
                "name": "Kostnadsställe",
                "id": KOSTNADSSTALLE_ID,
                "values": [
                    {"code": "STHLM", "name": "Stockholm"},
                    {"code": "GBG", "name": "Göteborg"},
                ],
            },
        ],
        "shortcut_dimensions": ["PROJEKT", "AVDELNING"],
        "gen_bus_posting_groups": [
            {
                "code": "INRIKES",
                "description": "Inrikes kunder och leverantörer",
                "def_vat_bus_posting_group": "INRIKES",
            },
            {
                "code": "EXPORT",
                "description": "Kunder och leverantörer utanför EU",
                "def_vat_bus_posting_group": "EXPORT",
            },
            {
                "code": "EU",
                "description": "Kunder och leverantörer inom EU",
                "def_vat_bus_posting_group": "EU",
            },
        ],
        "vat_bus_posting_groups": [
            {"code": "INRIKES", "description": "Inrikes kunder och leverantörer"},
            {"code": "EXPORT", "description": "Kunder och leverantörer utanför EU"},
            {"code": "EU", "description": "Kunder och leverantörer inom EU"},
        ],
        # Contoso's formats for Sweden (CreateVATRegNoFormat.Codeunit.al); other countries have
        # none here, so BC checks no other country's numbers.
        "vat_registration_formats": {"SE": ["SE##########01", "##########01"]},
        "customer_posting_groups": [
            {
                "code": "KUNDER",
                "description": "Kundfordringar inrikes",
                "receivables_account": "1510",
            },
            {
                "code": "KUNDER-EXP",
                "description": "Kundfordringar export",
                "receivables_account": "1515",
            },
        ],
        "gl_accounts": [
            {
                "number": "1510",
                "name": "Kundfordringar",
                "category": "Assets",
                "direct_posting": False,
            },
            {
                "number": "1515",
                "name": "Kundfordringar export",
                "category": "Assets",
                "direct_posting": False,
            },
            {
                "number": "3000",
                "name": "RÖRELSENS INTÄKTER",
                "category": "Income",
                "account_type": "Heading",
                "direct_posting": False,
            },
            {
                "number": "3010",
                "name": "Försäljning tjänster 25 %",
                "category": "Income",
                "vat_code": "25",
            },
            {
                "number": "3011",
                "name": "Försäljning tjänster 12 %",
                "category": "Income",
                "vat_code": "12",
            },
            {
                "number": "3040",
                "name": "Försäljning tjänster, momsfri",
                "category": "Income",
                "vat_code": "0",
            },
            {"number": "3051", "name": "Försäljning varor", "category": "Income", "vat_code": "25"},
            {
                "number": "3999",
                "name": "Spärrat intäktskonto",
                "category": "Income",
                "blocked": True,
            },
            {
                "number": "4010",
                "name": "Inköp material och varor",
                "category": "Cost of Goods Sold",
                "vat_code": "25",
            },
            {"number": "6110", "name": "Kontorsmateriel", "category": "Expense", "vat_code": "25"},
        ],
        "payment_terms": [
            {"code": "10 DAGAR", "name": "10 dagar netto", "due_date_calculation": "10D"},
            {"code": "14 DAGAR", "name": "14 dagar netto", "due_date_calculation": "14D"},
            {"code": "30 DAGAR", "name": "30 dagar netto", "due_date_calculation": "30D"},
        ],
        "vat": {"25": 25, "12": 12, "6": 6, "0": 0},
        "services": {
            "DimensionValues": True,
            "CustomerCard": True,
            "GenBusinessPostingGroups": True,
            "CustomerPostingGroups": True,
        },
        "number_series": {
            "customer": "K10000",
            "sales_invoice": "S-INV100001",
            "posted_sales_invoice": "103001",
            "purchase_invoice": "P-INV100002",
            "posted_purchase_invoice": "108004",
        },
        "customers": [
            {
                "number": "10000",
                "name": "Adatum Konsult AB",
                "address_line1": "Storgatan 1",
                "city": "Stockholm",
                "postal_code": "111 22",
                "country": "SE",
                "email": "ekonomi@adatum.example",
                "payment_terms": "30 DAGAR",
                "gen_bus_posting_group": "INRIKES",
                "customer_posting_group": "KUNDER",
                "vat_bus_posting_group": "INRIKES",
            },
            {
                "number": "20000",
                "name": "Trey Research GmbH",
                "address_line1": "Hauptstraße 5",
                "city": "Berlin",
                "postal_code": "10115",
                "country": "DE",
                "currency_code": "EUR",
                "payment_terms": "14 DAGAR",
                "gen_bus_posting_group": "EU",
                "customer_posting_group": "KUNDER-EXP",
                "vat_bus_posting_group": "EU",
            },
            {
                "number": "30000",
                "name": "Spärrad Kund AB",
                "country": "SE",
                "blocked": "All",
                "gen_bus_posting_group": "INRIKES",
                "customer_posting_group": "KUNDER",
            },
        ],
        "purchase_invoices": [
            {
                "number": "108001",
                "status": "Open",
                "vendor_number": "L1000",
                "vendor_name": "Kontorsleverantören AB",
                "vendor_invoice_number": "F-2026-0115",
                "posting_date": "2026-01-15",
                "lines": [
                    {
                        "account": "6110",
                        "description": "Kontorsmaterial projekt",
                        "quantity": 2,
                        "unit_cost": 250,
                        "tax_code": "25",
                        "dimensions": {"PROJEKT": "4005", "AVDELNING": "200"},
                    },
                    {
                        "account": "6110",
                        "description": "Pennor och block",
                        "quantity": 1,
                        "unit_cost": 50,
                        "tax_code": "25",
                        "dimensions": {"AVDELNING": "100"},
                    },
                ],
            },
            {
                "number": "108002",
                "status": "Open",
                "vendor_number": "L2000",
                "vendor_name": "Molntjänster Norden AB",
                "vendor_invoice_number": "MN-88812",
                "posting_date": "2026-02-03",
                "lines": [
                    {
                        "account": "4010",
                        "description": "Serverhyra februari",
                        "quantity": 1,
                        "unit_cost": 1200,
                        "tax_code": "25",
                        "dimensions": {"PROJEKT": "4006"},
                    },
                ],
            },
            {
                "number": "108003",
                "status": "Paid",
                "vendor_number": "L1000",
                "vendor_name": "Kontorsleverantören AB",
                "vendor_invoice_number": "F-2026-0310",
                "posting_date": "2026-03-10",
                "lines": [
                    {
                        "account": "4010",
                        "description": "Licenser",
                        "quantity": 3,
                        "unit_cost": 400,
                        "tax_code": "25",
                        "dimensions": {"PROJEKT": "4005", "AVDELNING": "200"},
                    },
                    {
                        "account": "4010",
                        "description": "Resa till kund",
                        "quantity": 1,
                        "unit_cost": 90,
                        "tax_code": "25",
                        "dimensions": {"PROJEKT": "4006", "KOSTNADSSTÄLLE": "STHLM"},
                    },
                ],
            },
            {
                "number": "P-INV100001",
                "status": "Draft",
                "vendor_number": "L2000",
                "vendor_name": "Molntjänster Norden AB",
                "vendor_invoice_number": "MN-90001",
                "posting_date": "2026-03-20",
                "lines": [
                    {
                        "account": "4010",
                        "description": "Serverhyra mars (utkast)",
                        "quantity": 1,
                        "unit_cost": 1200,
                        "tax_code": "25",
                        "dimensions": {"PROJEKT": "4005"},
                    },
                ],
            },
        ],
    }


def _international() -> dict[str, Any]:
    return {
        "name": DEMO.other_company_name,
        "id": DEMO.other_company_id,
        "country": "GB",
        "currency": "GBP",
        "currency_symbol": "£",
        "currencies": ["EUR", "USD", "SEK"],
        "dimensions": [
            {
                "code": "DEPARTMENT",
                "name": "Department",
                "values": [{"code": "ADM", "name": "Administration"}],
            },
            {
                "code": "PROJECT",
                "name": "Project",
                "values": [{"code": "P100", "name": "Internal"}],
            },
        ],
        "shortcut_dimensions": ["DEPARTMENT", "PROJECT"],
        "gen_bus_posting_groups": [
            {"code": "DOMESTIC", "description": "Domestic customers and vendors"}
        ],
        "customer_posting_groups": [{"code": "DOMESTIC", "description": "Domestic customers"}],
        "gl_accounts": [
            {
                "number": "40100",
                "name": "Income, Services",
                "category": "Income",
                "vat_code": "STANDARD",
            }
        ],
        "vat": {"STANDARD": 20, "ZERO": 0},
        "payment_terms": [
            {"code": "30 DAYS", "name": "Net 30 days", "due_date_calculation": "30D"}
        ],
        "services": {},
    }


def demo_seed() -> dict[str, Any]:
    """Tenant 7c2d… (alias cronus.example), app 3f1b…, environment Production, two companies."""
    return {
        "tenants": [
            {
                "id": DEMO.tenant_id,
                "domains": [DEMO.tenant_domain],
                "apps": [
                    {
                        "client_id": DEMO.client_id,
                        "secret": DEMO.client_secret,
                        "enabled_in_bc": True,
                        "display_name": "Moment integration (demo)",
                    }
                ],
                "environments": [
                    {
                        "name": DEMO.environment,
                        "type": "Production",
                        "companies": [_sverige(), _international()],
                    }
                ],
            }
        ]
    }
