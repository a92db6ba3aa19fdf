"""Integration configuration routes of the admin API (DESIGN §11), for Moment's dialog.

- ``PUT /v1/organizations/{org}/integrations/business-central`` → 201 ``{"status":"Created"}``
  / 200 ``{"status":"Updated"}`` / 422 ``{"errors":[…]}`` / 502 when BC cannot be reached
- ``GET`` (the config without its secret) and ``DELETE`` on the same path
- ``POST …/options`` with the credential fields → the dialog's drop-down data
- ``GET …/status`` → sections (configuration, last outcomes per object type, dead letters,
  and those of ``ApiContext.status_sections``)

Same logic as ``bc-sync config`` (:class:`worker.setup.service.ConfigService`). Errors are
answered by the API's error middleware (422 field errors, 502 BC unreachable, 503 no store).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from worker.api.app import (
    BC_UNREACHABLE,
    CALLER,
    CONTEXT,
    UNAVAILABLE,
    ApiContext,
    ServiceUnavailable,
    StatusSection,
    answer,
)
from worker.api.models import (
    Deleted,
    ErrorAnswer,
    OptionsAnswer,
    PublicConfig,
    Saved,
    StatusAnswer,
)
from worker.api.openapi import FIELD_ERRORS, Answer, Operation, describe, reads
from worker.config.model import ConfigValidationError, ConnectionFields, IntegrationConfig
from worker.ops import dlq
from worker.setup.service import ConfigService
from worker.store import check_org_id

log = structlog.get_logger(__name__)

PATH = "/v1/organizations/{org}/integrations/business-central"
# A section that takes longer (an unreachable broker) is answered as unavailable.
SECTION_TIMEOUT_S = 15.0


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def _service(request: web.Request) -> ConfigService:
    return _ctx(request).config_service()


def _org(request: web.Request) -> str:
    org = request.match_info["org"]
    try:
        return check_org_id(org)
    except ValueError as exc:
        raise ConfigValidationError(
            [{"field": "org", "code": "invalid", "message": str(exc)}]
        ) from None


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ConfigValidationError(
            [{"field": "body", "code": "invalid", "message": "The body must be a JSON object."}]
        ) from None


def _actor(request: web.Request) -> str:
    return f"api:{request.get(CALLER, 'unknown')}"


NOT_CONFIGURED = Answer(ErrorAnswer, "The organization has no integration (`error`: not_found).")
# The dialog of DESIGN §11, as Moment sends it (the company name URL-encoded is accepted).
DIALOG_EXAMPLE: dict[str, Any] = {
    "tenant_id": "7c2d9a4e-1b3f-4c5d-8e6f-0a1b2c3d4e5f",
    "client_id": None,
    "client_secret": "the-client-secret",
    "environment": "Production",
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


@describe(
    Operation(
        summary="Save the integration (verified against Business Central first)",
        tag="configuration",
        description=(
            "Checks every field, then gets a token from Entra ID and checks that the "
            "environment, the company, the dimensions and the posting groups exist in BC. "
            "Nothing is saved unless all of it holds. Without `client_secret` (or blank) the "
            "stored one is used and kept."
        ),
        body=IntegrationConfig,
        body_description="The integration dialog's fields.",
        body_example=DIALOG_EXAMPLE,
        responses={
            201: Answer(Saved, "Created: the organization had no integration."),
            200: Answer(Saved, "Updated."),
            422: FIELD_ERRORS,
            502: BC_UNREACHABLE,
            503: UNAVAILABLE,
        },
    )
)
async def put_config(request: web.Request) -> web.Response:
    org = _org(request)
    body = await _body(request)
    status = await _service(request).put(org, body, actor=_actor(request))
    return answer(Saved(status=status), status=201 if status == "Created" else 200)


@describe(
    Operation(
        summary="The saved integration (never its secret)",
        tag="configuration",
        responses={
            200: Answer(
                PublicConfig, "The saved fields; `client_secret_set` instead of the secret."
            ),
            404: NOT_CONFIGURED,
            422: FIELD_ERRORS,
            500: Answer(
                ErrorAnswer,
                "The stored row cannot be read (`error`: unreadable, e.g. the encryption key "
                "changed), or an unexpected failure.",
            ),
            503: UNAVAILABLE,
        },
    )
)
async def get_config(request: web.Request) -> web.Response:
    org = _org(request)
    stored = await _service(request).get(org)
    if stored is None:
        return answer(ErrorAnswer(error="not_found"), status=404)
    return web.json_response(stored.to_public_dict())


@describe(
    Operation(
        summary="Switch the integration off and forget its settings",
        tag="configuration",
        responses={
            200: Answer(Deleted, "Deleted."),
            404: NOT_CONFIGURED,
            422: FIELD_ERRORS,
            503: UNAVAILABLE,
        },
    )
)
async def delete_config(request: web.Request) -> web.Response:
    org = _org(request)
    deleted = await _service(request).delete(org, actor=_actor(request))
    if not deleted:
        return answer(ErrorAnswer(error="not_found"), status=404)
    return answer(Deleted(status="Deleted"))


@reads  # verifies the credentials and lists BC's choices; stores nothing
@describe(
    Operation(
        summary="The dialog's drop-downs: companies, dimensions, posting groups",
        tag="configuration",
        description=(
            "With the credential fields (the rest of the form may come along and is ignored). "
            "Without `client_secret` the stored one is used; without `company_name` only the "
            "companies are listed."
        ),
        body=ConnectionFields,
        body_description="The dialog's connection fields.",
        body_example={
            k: DIALOG_EXAMPLE[k]
            for k in ("tenant_id", "client_secret", "environment", "company_name")
        },
        responses={
            200: Answer(OptionsAnswer, "What BC has; `issues` names what could not be read."),
            422: FIELD_ERRORS,
            502: BC_UNREACHABLE,
            503: UNAVAILABLE,
        },
    )
)
async def post_options(request: web.Request) -> web.Response:
    org = _org(request)
    body = await _body(request)
    options = await _service(request).options(org, body)
    return answer(OptionsAnswer.of(options.to_dict()))


# ---------------------------------------------------------------------------------------------
# Status: one section per concern; a failing section is reported, the others still answer.


def _sections(ctx: ApiContext) -> dict[str, StatusSection]:
    """The status answer's sections: ours, then those the composition root adds."""

    async def configuration(org: str) -> Any:
        stamp = await ctx.config_service().store.configs.stamp(org)
        if stamp is None:
            return {"configured": False}
        version, updated_at = stamp
        return {"configured": True, "version": version, "updated_at": updated_at.isoformat()}

    async def objects(org: str) -> Any:
        return [o.to_dict() for o in await ctx.config_service().store.outcomes(org)]

    async def dead_letters(org: str) -> Any:
        # From a cached scan (ApiContext.dead_letter_counts), not one scan per call.
        assert ctx.dead_letter_counts is not None  # ApiContext fills it in
        try:
            codes = await ctx.dead_letter_counts.for_org(org)
        except dlq.DlqBusy:
            return {"count": None, "error": "another dead-letter operation is running"}
        except dlq.DlqError as exc:
            return {"count": None, "error": str(exc)}
        return {"count": sum(codes.values()), "by_code": codes}

    return {
        "configuration": configuration,
        "objects": objects,
        "dead_letters": dead_letters,
        **ctx.status_sections,
    }


@describe(
    Operation(
        summary="Sync status: configuration, last outcomes per object type, dead letters",
        tag="configuration",
        description='A section that cannot be read answers `{"error": …}`; the rest still answer.',
        responses={200: Answer(StatusAnswer, "One section per concern."), 422: FIELD_ERRORS},
    )
)
async def get_status(request: web.Request) -> web.Response:
    org = _org(request)
    sections = _sections(_ctx(request))
    results = await asyncio.gather(
        *(asyncio.wait_for(section(org), SECTION_TIMEOUT_S) for section in sections.values()),
        return_exceptions=True,
    )
    report: dict[str, Any] = {"organization": org}
    for name, result in zip(sections, results, strict=True):
        if isinstance(result, ServiceUnavailable):
            report[name] = {"error": str(result)}
        elif isinstance(result, Exception):
            log.warning("api.status_section_failed", section=name, error=type(result).__name__)
            report[name] = {"error": "unavailable"}
        elif isinstance(result, BaseException):
            raise result
        else:
            report[name] = result
    return answer(StatusAnswer.of(report))


def add_routes(app: web.Application) -> None:
    app.router.add_put(PATH, put_config)
    app.router.add_get(PATH, get_config)
    app.router.add_delete(PATH, delete_config)
    app.router.add_post(PATH + "/options", post_options)
    app.router.add_get(PATH + "/status", get_status)
