"""Integration configuration routes of the admin API (DESIGN §11), for Moment's dialog.

- ``PUT /v1/organizations/{org}/integrations/business-central`` → 201 ``{"status":"Created"}``
  / 200 ``{"status":"Updated"}`` / 422 ``{"errors":[…]}`` / 502 when BC cannot be reached
- ``GET`` (the config without its secret) and ``DELETE`` on the same path
- ``POST …/options`` with the credential fields → the dialog's drop-down data
- ``GET …/status`` → sections (configuration, last outcomes per object type, dead letters);
  other modules add theirs with :func:`add_status_section`

Same logic as ``bc-sync config`` (:class:`worker.setup.service.ConfigService`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from worker.api.app import CALLER, CONTEXT
from worker.bc import BcHub
from worker.config.model import ConfigValidationError, FieldError
from worker.ops import dlq
from worker.setup.service import ConfigService
from worker.setup.verify import BcUnreachable
from worker.store import ConfigCache, Store, StoredConfigError, check_org_id

log = structlog.get_logger(__name__)

PATH = "/v1/organizations/{org}/integrations/business-central"
# How long the status call waits for a running dead-letter operation before leaving it out.
DLQ_LOCK_WAIT_S = 5.0
# A section that takes longer (an unreachable broker) is answered as unavailable.
SECTION_TIMEOUT_S = 15.0

StatusSection = Callable[[web.Request, str], Awaitable[Any]]


@dataclass
class _State:
    """Per-app state, resolved at the first request (the context may be filled after start)."""

    service: ConfigService | None = None
    own_hub: BcHub | None = None
    sections: dict[str, StatusSection] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


STATE = web.AppKey("config_routes", _State)


class _Unavailable(Exception):
    pass


def _find(services: dict[str, Any], name: str, attr: str, kind: type[Any]) -> Any:
    value = services.get(name)
    if isinstance(value, kind):
        return value
    runtime = services.get("runtime")
    value = getattr(runtime, attr, None)
    return value if isinstance(value, kind) else None


async def _service(request: web.Request) -> ConfigService:
    state = request.app[STATE]
    if state.service is not None:
        return state.service
    async with state.lock:
        if state.service is None:
            ctx = request.app[CONTEXT]
            given = ctx.services.get("config_service")
            if isinstance(given, ConfigService):
                state.service = given
                return given
            store = _find(ctx.services, "store", "store", Store)
            if store is None:
                raise _Unavailable("the configuration store is not available in this process")
            hub = _find(ctx.services, "hub", "hub", BcHub)
            if hub is None:
                hub = state.own_hub = bc_hub(ctx.settings)
            cache = _find(ctx.services, "config_cache", "configs", ConfigCache)
            state.service = ConfigService(store, hub, cache)
    return state.service


def _errors(errors: list[FieldError], status: int = 422) -> web.Response:
    return web.json_response({"errors": errors}, status=status)


def _org(request: web.Request) -> str:
    org = request.match_info["org"]
    try:
        return check_org_id(org)
    except ValueError as exc:
        raise web.HTTPUnprocessableEntity(
            text=json.dumps({"errors": [{"field": "org", "code": "invalid", "message": str(exc)}]}),
            content_type="application/json",
        ) from None


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPUnprocessableEntity(
            text=json.dumps(
                {
                    "errors": [
                        {
                            "field": "body",
                            "code": "invalid",
                            "message": "The body must be a JSON object.",
                        }
                    ]
                }
            ),
            content_type="application/json",
        ) from None


def _unreachable(exc: BcUnreachable) -> web.Response:
    retry_after = max(1, round(exc.retry_after))
    return web.json_response(
        {"error": "bc_unreachable", "message": exc.message, "retry_after": retry_after},
        status=502,
        headers={"Retry-After": str(retry_after)},
    )


def _unavailable(exc: _Unavailable) -> web.Response:
    return web.json_response({"error": "unavailable", "message": str(exc)}, status=503)


def _actor(request: web.Request) -> str:
    return f"api:{request.get(CALLER, 'unknown')}"


async def put_config(request: web.Request) -> web.Response:
    org = _org(request)
    body = await _body(request)
    try:
        service = await _service(request)
        status = await service.put(org, body, actor=_actor(request))
    except ConfigValidationError as exc:
        return _errors(exc.errors)
    except BcUnreachable as exc:
        return _unreachable(exc)
    except _Unavailable as exc:
        return _unavailable(exc)
    return web.json_response({"status": status}, status=201 if status == "Created" else 200)


async def get_config(request: web.Request) -> web.Response:
    org = _org(request)
    try:
        stored = await (await _service(request)).get(org)
    except StoredConfigError as exc:
        return web.json_response({"error": "unreadable", "message": str(exc)}, status=500)
    except _Unavailable as exc:
        return _unavailable(exc)
    if stored is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(stored.to_public_dict())


async def delete_config(request: web.Request) -> web.Response:
    org = _org(request)
    try:
        deleted = await (await _service(request)).delete(org, actor=_actor(request))
    except _Unavailable as exc:
        return _unavailable(exc)
    if not deleted:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response({"status": "Deleted"})


async def post_options(request: web.Request) -> web.Response:
    org = _org(request)
    body = await _body(request)
    try:
        answer = await (await _service(request)).options(org, body)
    except ConfigValidationError as exc:
        return _errors(exc.errors)
    except BcUnreachable as exc:
        return _unreachable(exc)
    except _Unavailable as exc:
        return _unavailable(exc)
    return web.json_response(answer.to_dict())


# ---------------------------------------------------------------------------------------------
# Status: one section per concern; a failing section is reported, the others still answer.


async def _configuration_section(request: web.Request, org: str) -> Any:
    service = await _service(request)
    stamp = await service.store.configs.stamp(org)
    if stamp is None:
        return {"configured": False}
    version, updated_at = stamp
    return {"configured": True, "version": version, "updated_at": updated_at.isoformat()}


async def _objects_section(request: web.Request, org: str) -> Any:
    service = await _service(request)
    return [outcome.to_dict() for outcome in await service.store.outcomes(org)]


def _literal_glob(text: str) -> str:
    # dlq filters treat * ? [ as globs; an organization id is matched literally.
    return re.sub(r"([*?\[])", r"[\1]", text)


async def _dead_letters_section(request: web.Request, org: str) -> Any:
    settings = request.app[CONTEXT].settings
    filters = dlq.Filters(org=_literal_glob(org))
    try:
        letters = await dlq.list_dead_letters(settings, filters, lock_wait=DLQ_LOCK_WAIT_S)
    except dlq.DlqBusy:
        return {"count": None, "error": "another dead-letter operation is running"}
    except dlq.DlqError as exc:
        return {"count": None, "error": str(exc)}
    except (ConnectionError, OSError) as exc:
        log.warning("status: dead letters unavailable", org=org, error=type(exc).__name__)
        return {"count": None, "error": "the message broker cannot be reached"}
    codes: dict[str, int] = {}
    for letter in letters:
        key = letter.code or "(none)"
        codes[key] = codes.get(key, 0) + 1
    return {"count": len(letters), "by_code": codes}


def add_status_section(app: web.Application, name: str, section: StatusSection) -> None:
    """Add ``name`` to the status answer: ``await section(request, org)`` gives its JSON."""
    app[STATE].sections[name] = section


async def get_status(request: web.Request) -> web.Response:
    org = _org(request)
    sections = request.app[STATE].sections
    results = await asyncio.gather(
        *(
            asyncio.wait_for(section(request, org), SECTION_TIMEOUT_S)
            for section in sections.values()
        ),
        return_exceptions=True,
    )
    answer: dict[str, Any] = {"organization": org}
    for name, result in zip(sections, results, strict=True):
        if isinstance(result, _Unavailable):
            answer[name] = {"error": str(result)}
        elif isinstance(result, Exception):
            log.warning("status section failed", section=name, error=type(result).__name__)
            answer[name] = {"error": "unavailable"}
        elif isinstance(result, BaseException):
            raise result
        else:
            answer[name] = result
    return web.json_response(answer)


async def _close_own_hub(app: web.Application) -> None:
    hub = app[STATE].own_hub
    if hub is not None:
        await hub.close()


def add_routes(app: web.Application) -> None:
    state = _State()
    app[STATE] = state
    add_status_section(app, "configuration", _configuration_section)
    add_status_section(app, "objects", _objects_section)
    add_status_section(app, "dead_letters", _dead_letters_section)
    app.on_cleanup.append(_close_own_hub)
    app.router.add_put(PATH, put_config)
    app.router.add_get(PATH, get_config)
    app.router.add_delete(PATH, delete_config)
    app.router.add_post(PATH + "/options", post_options)
    app.router.add_get(PATH + "/status", get_status)
