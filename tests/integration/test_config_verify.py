"""Verify on save against the emulator (real HTTPS, real msal): every situation a Moment admin
can get wrong gives an error on the right field, in words that say what to do.

The settings and BC options come from tests/support/settings.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.fixtures import EmulatorHandle
from tests.emulator.seed import DEMO
from tests.support.factories import dialog
from tests.support.net import closed_port_url
from tests.support.settings import FAST_VERIFY, emulator_settings, make_settings
from worker.app import bc_hub
from worker.bc import BcHub
from worker.config.model import ConfigValidationError, FieldError, parse_config
from worker.setup.verify import BcUnreachable, did_you_mean, verify

OTHER_TENANT = "0b5e9a1c-2d3f-4a5b-8c7d-9e0f1a2b3c4d"

# Company names that break naive URL building: '/', quotes, '&', '%', '#', '?', non-ASCII.
HOSTILE = ["A/B", "O'Brien & Co", "Företag Åäö AB", "100% Konsult #1?", "Zoë+Ürsula's (EU)"]


@pytest.fixture
async def hub(tmp_path: Path, emulator: EmulatorHandle) -> AsyncIterator[BcHub]:
    async with bc_hub(emulator_settings(tmp_path, emulator), options=FAST_VERIFY) as h:
        yield h


def hostile_company(name: str, company_id: str) -> dict[str, Any]:
    """A company seed with the dimensions, posting groups and services of the dialog."""
    return {
        "name": name,
        "id": company_id,
        "country": "SE",
        "currency": "SEK",
        "dimensions": [
            {"code": "PROJEKT", "name": "Projekt", "values": [{"code": "1", "name": "Ett"}]},
            {"code": "AVDELNING", "name": "Avdelning", "values": [{"code": "1", "name": "Ett"}]},
        ],
        "shortcut_dimensions": ["PROJEKT", "AVDELNING"],
        "gen_bus_posting_groups": [{"code": "INRIKES"}, {"code": "EXPORT"}],
        "customer_posting_groups": [{"code": "KUNDER"}, {"code": "KUNDER-EXP"}],
        "services": {
            "DimensionValues": True,
            "CustomerCard": True,
            "GenBusinessPostingGroups": True,
            "CustomerPostingGroups": True,
        },
    }


async def seed_hostile(emulator: EmulatorHandle) -> None:
    companies = [
        hostile_company(name, f"e{i:07d}-0000-4000-8000-000000000001")
        for i, name in enumerate(HOSTILE)
    ]
    await emulator.control.seed(
        {
            "tenants": [
                {
                    "id": DEMO.tenant_id,
                    "environments": [{"name": DEMO.environment, "companies": companies}],
                }
            ]
        }
    )


async def errors_of(hub: BcHub, body: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(ConfigValidationError) as caught:
        await verify(parse_config(body), hub)
    return caught.value.errors


def only(errors: list[FieldError]) -> FieldError:
    assert len(errors) == 1, errors
    return errors[0]


# ---------------------------------------------------------------------------------------------


async def test_the_demo_dialog_verifies_and_reports_the_company_facts(hub: BcHub) -> None:
    facts = await verify(parse_config(dialog()), hub)
    assert facts.id == DEMO.company_id
    assert facts.name == "CRONUS Sverige AB"
    assert (facts.country, facts.local_currency) == ("SE", "SEK")
    assert facts.shortcut_dimensions[:2] == ("PROJEKT", "AVDELNING")
    assert {d.code for d in facts.dimensions} >= {"PROJEKT", "AVDELNING", "KOSTNADSSTÄLLE"}
    assert sorted(g.code for g in facts.gen_bus_posting_groups or ()) == ["EU", "EXPORT", "INRIKES"]


async def test_an_unknown_tenant_is_a_tenant_id_error(hub: BcHub) -> None:
    error = only(await errors_of(hub, dialog(tenant_id=OTHER_TENANT)))
    assert (error["field"], error["code"]) == ("tenant_id", "unknown_tenant")
    assert OTHER_TENANT in error["message"]
    assert "does not know the tenant" in error["message"]


async def test_a_rejected_secret_is_a_client_secret_error(hub: BcHub) -> None:
    error = only(await errors_of(hub, dialog(client_secret="not-the-right-secret-42")))
    assert (error["field"], error["code"]) == ("client_secret", "secret_rejected")
    assert "rejected by Microsoft Entra ID" in error["message"]
    assert "not-the-right-secret-42" not in error["message"]


async def test_an_app_not_set_up_in_bc_names_the_entra_applications_page(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    await emulator.control.set_app(DEMO.tenant_id, DEMO.client_id, enabled_in_bc=False)
    # With the installation's app, the admin acts on the tenant ...
    error = only(await errors_of(hub, dialog()))
    assert (error["field"], error["code"]) == ("tenant_id", "app_not_set_up_in_bc")
    assert "'Microsoft Entra Applications' page" in error["message"]
    assert DEMO.client_id in error["message"]
    # ... with an app of their own, on the client ID.
    error = only(await errors_of(hub, dialog(client_id=DEMO.client_id)))
    assert (error["field"], error["code"]) == ("client_id", "app_not_set_up_in_bc")


async def test_an_own_app_unknown_to_the_tenant_is_a_client_id_error(hub: BcHub) -> None:
    stranger = "5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
    error = only(await errors_of(hub, dialog(client_id=stranger)))
    assert (error["field"], error["code"]) == ("client_id", "app_not_found")
    assert stranger in error["message"]


async def test_a_missing_environment_is_an_environment_error(hub: BcHub) -> None:
    error = only(await errors_of(hub, dialog(environment="Sandbox-2")))
    assert (error["field"], error["code"]) == ("environment", "not_found")
    assert "no Business Central environment named 'Sandbox-2'" in error["message"]


async def test_an_unknown_company_lists_the_companies_and_suggests_the_closest(
    hub: BcHub,
) -> None:
    error = only(await errors_of(hub, dialog(company_name="CRONUS Sverge AB")))
    assert (error["field"], error["code"]) == ("company_name", "not_found")
    assert "no company named 'CRONUS Sverge AB'" in error["message"]
    assert "Did you mean 'CRONUS Sverige AB'?" in error["message"]
    assert (
        "Companies there: 'CRONUS International Ltd.', 'CRONUS Sverige AB'." in (error["message"])
    )
    # BC matches names exactly: another case is not the company, but it is suggested first.
    error = only(await errors_of(hub, dialog(company_name="cronus sverige ab")))
    assert "Did you mean 'CRONUS Sverige AB'" in error["message"]


async def test_missing_dimensions_name_their_fields(hub: BcHub, emulator: EmulatorHandle) -> None:
    await emulator.control.delete("dimension", "PROJEKT", at=emulator.company_ref)
    errors = await errors_of(hub, dialog(department_dimension="AVDELNIN"))
    assert [(e["field"], e["code"]) for e in errors] == [
        ("project_dimension", "not_found"),
        ("department_dimension", "not_found"),
    ]
    assert errors[0]["message"].startswith(
        "Project dimension: 'PROJEKT' does not exist in company 'CRONUS Sverige AB' (Dimensions)."
    )
    assert "Did you mean 'AVDELNING'?" in errors[1]["message"]
    assert "Codes there: AVDELNING, KOSTNADSSTÄLLE." in errors[1]["message"]


async def test_a_missing_posting_group_names_its_field(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    await emulator.control.delete("customer_posting_group", "KUNDER-EXP", at=emulator.company_ref)
    groups = dialog()["customer_posting_groups"]
    groups["abroad"]["gen_bus_posting_group"] = "EXPRT"
    errors = await errors_of(hub, dialog(customer_posting_groups=groups))
    assert [(e["field"], e["code"]) for e in errors] == [
        ("customer_posting_groups.abroad.gen_bus_posting_group", "not_found"),
        ("customer_posting_groups.abroad.customer_posting_group", "not_found"),
    ]
    assert errors[0]["message"] == (
        "Gen. business posting group for abroad invoice addresses: 'EXPRT' does not exist in "
        "company 'CRONUS Sverige AB' (Gen. Business Posting Groups). Did you mean 'EXPORT'? "
        "Codes there: EU, EXPORT, INRIKES."
    )
    assert "Codes there: KUNDER." in errors[1]["message"]


async def test_an_unpublished_service_names_the_page_and_the_service(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    for service in ("GenBusinessPostingGroups", "CustomerPostingGroups"):
        await emulator.control.set_service(service, False, at=emulator.company_ref)
    errors = await errors_of(hub, dialog())
    assert [(e["field"], e["code"]) for e in errors] == [
        ("customer_posting_groups", "service_not_published")
    ] * 2
    assert "Gen. Business Posting Groups (page 312)" in errors[0]["message"]
    assert "Service Name 'GenBusinessPostingGroups'" in errors[0]["message"]
    assert "'Web Services' page" in errors[0]["message"]
    assert "Service Name 'CustomerPostingGroups'" in errors[1]["message"]
    # Without customer export the posting-group pages are not needed.
    assert await verify(parse_config(dialog(export_customers=False)), hub)


async def test_the_written_pages_must_be_published_too(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    for service in ("CustomerCard", "DimensionValues"):
        await emulator.control.set_service(service, False, at=emulator.company_ref)
    errors = await errors_of(hub, dialog())
    by_field = {e["field"]: e["message"] for e in errors}
    assert [e["code"] for e in errors] == ["service_not_published"] * 2
    assert "Service Name 'CustomerCard'" in by_field["customer_posting_groups"]
    assert "Customer Card (page 21)" in by_field["customer_posting_groups"]
    assert "Service Name 'DimensionValues'" in by_field["project_dimension"]
    assert "Dimension Values (page 537)" in by_field["project_dimension"]
    # Neither is needed when customers and projects are not exported.
    assert await verify(parse_config(dialog(export_customers=False, export_projects=False)), hub)


async def test_the_other_company_without_services_verifies_without_customer_and_project_export(
    hub: BcHub,
) -> None:
    body = dialog(
        company_name=DEMO.other_company_name,
        export_customers=False,
        export_projects=False,
        project_dimension="PROJECT",
        department_dimension="DEPARTMENT",
    )
    facts = await verify(parse_config(body), hub)
    assert (facts.id, facts.country, facts.local_currency) == (
        DEMO.other_company_id,
        "GB",
        "GBP",
    )


async def test_bc_unreachable_is_not_a_config_error(tmp_path: Path) -> None:
    url = closed_port_url()
    settings = make_settings(tmp_path, bc_api_url=url, authority_url=url, client_id=DEMO.client_id)
    async with bc_hub(settings, options=FAST_VERIFY) as dead:
        with pytest.raises(BcUnreachable) as caught:
            await verify(parse_config(dialog()), dead)
    assert "could not be reached" in caught.value.message
    assert caught.value.retry_after > 0


@pytest.mark.parametrize(("status", "path"), [(503, "/companies$"), (429, "/dimensions$")])
async def test_bc_failing_after_the_retries_is_unreachable(
    hub: BcHub, emulator: EmulatorHandle, status: int, path: str
) -> None:
    await emulator.control.add_fault("status", path=path, status=status, retry_after=7)
    with pytest.raises(BcUnreachable) as caught:
        await verify(parse_config(dialog()), hub)
    assert "try again" in caught.value.message
    assert caught.value.retry_after == 7


async def test_a_bc_that_does_not_answer_in_time_is_unreachable(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    await emulator.control.add_fault("hang", path="/generalLedgerSetup$")
    with pytest.raises(BcUnreachable) as caught:
        await verify(parse_config(dialog()), hub, timeout_s=1)
    assert "did not answer within 1 seconds" in caught.value.message


@pytest.mark.parametrize(
    "typed",
    [*HOSTILE, "A%2FB", "O%27Brien%20%26%20Co", "F%C3%B6retag%20%C3%85%C3%A4%C3%B6%20AB"],
)
async def test_hostile_and_encoded_company_names_verify_end_to_end(
    hub: BcHub, emulator: EmulatorHandle, typed: str
) -> None:
    await seed_hostile(emulator)
    config = parse_config(dialog(company_name=typed))
    facts = await verify(config, hub)
    assert facts.name == config.company_name
    assert facts.name in HOSTILE
    # The ODataV4 calls (posting groups) reached this company, not another one.
    assert [g.code for g in facts.customer_posting_groups or ()] == ["KUNDER", "KUNDER-EXP"]
    logged = await emulator.control.requests(path="GenBusinessPostingGroups")
    assert [r["status"] for r in logged] == [200]


def test_did_you_mean_prefers_another_case_then_similar_names() -> None:
    names = ["CRONUS Sverige AB", "CRONUS International Ltd.", "Contoso"]
    assert did_you_mean("cronus sverige ab", names)[0] == "CRONUS Sverige AB"
    assert did_you_mean("CRONUS Sverge AB", names) == ["CRONUS Sverige AB"]
    assert did_you_mean("Fabrikam", names) == []
