"""The integration log on the admin API (DESIGN §11), bearer auth like every ``/v1`` route:

- ``GET /v1/organizations/{org}/integrations/business-central/objects`` with the filters
  ``type``, ``state``, ``number`` (a Moment number or id), ``since`` (changed since: ISO time or
  ``2h``/``7d``), ``limit`` (1-500, default 50) and ``cursor`` (the previous answer's
  ``next_cursor``) → ``{"objects": [...], "next_cursor": …}``, newest change first;
- ``GET …/objects/{type}/{id}`` → the object with its ``history`` (the last 50 steps), or 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from worker.api.app import CONTEXT
from worker.api.config_routes import PATH as CONFIG_PATH
from worker.api.models import ErrorAnswer
from worker.api.openapi import FIELD_ERRORS, Answer, Operation, Param, describe
from worker.ops.integration_log import IntegrationLog, LogFilterError, parse_filters
from worker.store import check_org_id

PATH = CONFIG_PATH + "/objects"

# One ledger entry as the integration log answers it (worker.ops.integration_log).
_ENTRY = {
    "type": "object",
    "required": ["type", "moment_id", "state"],
    "properties": {
        "type": {"type": "string", "description": "customer, project, invoice, credit_note"},
        "moment_id": {"type": "string"},
        "moment_number": {"type": ["string", "null"]},
        "state": {
            "type": "string",
            "enum": ["pending", "retrying", "synced", "failed", "skipped", "waiting"],
        },
    },
}


def _invalid(field: str, message: str) -> web.Response:
    return web.json_response(
        {"errors": [{"field": field, "code": "invalid", "message": message}]}, status=422
    )


def _log(request: web.Request) -> IntegrationLog:
    return request.app[CONTEXT].log()


def _org(request: web.Request) -> str:
    return check_org_id(request.match_info["org"])


@describe(
    Operation(
        summary="The integration log: every Moment object's state, newest change first",
        tag="integration log",
        query=(
            Param("type", "customer, project, invoice or credit_note."),
            Param("state", "pending, retrying, synced, failed, skipped or waiting."),
            Param("number", "A Moment number or id."),
            Param("id", "Same as number."),
            Param("since", "Changed since: an ISO time, or an age such as 2h or 7d."),
            Param("limit", "Rows at most (1-500, default 50).", {"type": "string"}),
            Param("cursor", "The previous answer's next_cursor."),
        ),
        responses={
            200: Answer(
                None,
                "The page of objects and the cursor of the next one (null at the end).",
                schema={
                    "type": "object",
                    "required": ["objects", "next_cursor"],
                    "properties": {
                        "objects": {"type": "array", "items": _ENTRY},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
            ),
            422: FIELD_ERRORS,
        },
    )
)
async def list_objects(request: web.Request) -> web.Response:
    q = request.query
    try:
        org = _org(request)
        filters = parse_filters(
            type=q.get("type"),
            state=q.get("state"),
            number=q.get("number") or q.get("id"),
            since=q.get("since"),
            limit=q.get("limit"),
            cursor=q.get("cursor"),
        )
    except LogFilterError as exc:
        return _invalid(exc.field, exc.message)
    except ValueError as exc:
        return _invalid("org", str(exc))
    log = _log(request)
    answer: dict[str, Any] = await log.objects(org, filters)
    return web.json_response(answer)


@describe(
    Operation(
        summary="One Moment object's state and its steps (the last 50)",
        tag="integration log",
        path=(
            Param("type", "customer, project, invoice or credit_note.", where="path"),
            Param("id", "The Moment id of the object.", where="path"),
        ),
        responses={
            200: Answer(
                None,
                "The object with its history.",
                schema={**_ENTRY, "required": [*_ENTRY["required"], "history"]},
            ),
            404: Answer(ErrorAnswer, "No such object (`error`: not_found)."),
            422: FIELD_ERRORS,
        },
    )
)
async def get_object(request: web.Request) -> web.Response:
    try:
        org = _org(request)
    except ValueError as exc:
        return _invalid("org", str(exc))
    log = _log(request)
    try:
        found = await log.object(org, request.match_info["type"], request.match_info["id"])
    except LogFilterError as exc:
        return _invalid(exc.field, exc.message)
    if found is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(found)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, list_objects)
    app.router.add_get(PATH + "/{type}/{id}", get_object)
