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
    CALLER,
    CONTEXT,
    ApiContext,
    ServiceUnavailable,
    StatusSection,
    reads,
)
from worker.config.model import ConfigValidationError
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


async def put_config(request: web.Request) -> web.Response:
    org = _org(request)
    body = await _body(request)
    status = await _service(request).put(org, body, actor=_actor(request))
    return web.json_response({"status": status}, status=201 if status == "Created" else 200)


async def get_config(request: web.Request) -> web.Response:
    org = _org(request)
    stored = await _service(request).get(org)
    if stored is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(stored.to_public_dict())


async def delete_config(request: web.Request) -> web.Response:
    org = _org(request)
    deleted = await _service(request).delete(org, actor=_actor(request))
    if not deleted:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response({"status": "Deleted"})


@reads  # verifies credentials and lists BC's choices; stores nothing
async def post_options(request: web.Request) -> web.Response:
    org = _org(request)
    body = await _body(request)
    answer = await _service(request).options(org, body)
    return web.json_response(answer.to_dict())


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


async def get_status(request: web.Request) -> web.Response:
    org = _org(request)
    sections = _sections(_ctx(request))
    results = await asyncio.gather(
        *(asyncio.wait_for(section(org), SECTION_TIMEOUT_S) for section in sections.values()),
        return_exceptions=True,
    )
    answer: dict[str, Any] = {"organization": org}
    for name, result in zip(sections, results, strict=True):
        if isinstance(result, ServiceUnavailable):
            answer[name] = {"error": str(result)}
        elif isinstance(result, Exception):
            log.warning("api.status_section_failed", section=name, error=type(result).__name__)
            answer[name] = {"error": "unavailable"}
        elif isinstance(result, BaseException):
            raise result
        else:
            answer[name] = result
    return web.json_response(answer)


def add_routes(app: web.Application) -> None:
    app.router.add_put(PATH, put_config)
    app.router.add_get(PATH, get_config)
    app.router.add_delete(PATH, delete_config)
    app.router.add_post(PATH + "/options", post_options)
    app.router.add_get(PATH + "/status", get_status)
