"""Dead-letter routes of the admin API, so Moment's back-office can show failures and retry them.

- ``GET /v1/dead-letters`` ?org&type&code&since&until&limit&id&group_by → rows or counts
- ``GET /v1/dead-letters/{id}`` → one dead letter in full (envelope, headers, history, fix)
- ``POST /v1/dead-letters/replay`` {org, type, code, since, until, limit, ids, dry_run}

Same logic as ``bc-sync dlq`` (:mod:`worker.ops.dlq`). Listing reads only.
"""

from __future__ import annotations

from typing import Any

import structlog
from aio_pika.exceptions import AMQPConnectionError
from aiohttp import web

from worker.api.app import CALLER, CONTEXT
from worker.ops import dlq

log = structlog.get_logger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# How long a request waits for another dead-letter operation before answering 409.
LOCK_WAIT_S = 10.0
REPLAY_FIELDS = frozenset({"org", "type", "code", "since", "until", "limit", "ids", "dry_run"})


def _invalid(errors: list[dict[str, str]]) -> web.Response:
    return web.json_response({"errors": errors}, status=422)


def _field_error(exc: dlq.FilterError) -> web.Response:
    return _invalid([{"field": exc.field, "code": "invalid", "message": exc.message}])


def _limit(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if isinstance(value, bool):
        raise dlq.FilterError("limit", "must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise dlq.FilterError("limit", f"must be a whole number, got {value!r}") from None
    if not 1 <= number <= MAX_LIMIT:
        raise dlq.FilterError("limit", f"must be between 1 and {MAX_LIMIT}")
    return number


def _unavailable(exc: Exception) -> web.Response:
    if isinstance(exc, dlq.DlqBusy):
        return web.json_response({"error": "busy", "message": str(exc)}, status=409)
    if isinstance(exc, dlq.DlqError):
        return web.json_response({"error": "unavailable", "message": str(exc)}, status=503)
    # Broker unreachable: say so without the library's text (it can hold the URL).
    log.warning("dead-letter request: broker unreachable", error=type(exc).__name__)
    return web.json_response(
        {"error": "unavailable", "message": "the message broker cannot be reached"}, status=503
    )


_BROKER_ERRORS = (dlq.DlqError, AMQPConnectionError, ConnectionError, OSError)


async def list_dead_letters(request: web.Request) -> web.Response:
    q = request.query
    unknown = set(q) - {"org", "type", "code", "since", "until", "limit", "id", "group_by"}
    if unknown:
        return _invalid(
            [{"field": k, "code": "unknown", "message": "unknown parameter"} for k in unknown]
        )
    group_by = q.get("group_by") or None
    try:
        if group_by is not None and group_by not in dlq.GROUP_BY:
            raise dlq.FilterError("group_by", f"must be one of {', '.join(dlq.GROUP_BY)}")
        # Counts look at every match; a row listing is paged by limit.
        limit = None if group_by and not q.get("limit") else _limit(q.get("limit"))
        filters = dlq.Filters.parse(
            org=q.get("org"),
            type=q.get("type"),
            code=q.get("code"),
            since=q.get("since"),
            until=q.get("until"),
            ids=q.getall("id", []),
            limit=limit,
        )
    except dlq.FilterError as exc:
        return _field_error(exc)
    settings = request.app[CONTEXT].settings
    try:
        letters = await dlq.list_dead_letters(settings, filters, lock_wait=LOCK_WAIT_S)
    except _BROKER_ERRORS as exc:
        return _unavailable(exc)
    if group_by:
        groups = dlq.group_counts(letters, group_by)
        return web.json_response(
            {
                "group_by": group_by,
                "total": len(letters),
                "groups": [{"key": k, "count": n} for k, n in groups],
                "filters": filters.describe(),
            }
        )
    return web.json_response(
        {
            "count": len(letters),
            "limit": filters.limit,
            "items": [letter.row() for letter in letters],
            "filters": filters.describe(),
        }
    )


async def show_dead_letter(request: web.Request) -> web.Response:
    settings = request.app[CONTEXT].settings
    message_id = request.match_info["id"]
    try:
        detail = await dlq.show_dead_letter(settings, message_id, lock_wait=LOCK_WAIT_S)
    except _BROKER_ERRORS as exc:
        return _unavailable(exc)
    if detail is None:
        return web.json_response({"error": "not_found", "id": message_id}, status=404)
    return web.json_response(detail)


def _replay_filters(body: Any) -> tuple[dlq.Filters, bool]:
    if not isinstance(body, dict):
        raise dlq.FilterError("body", "must be a JSON object")
    unknown = sorted(set(body) - REPLAY_FIELDS)
    if unknown:
        # A typo such as "organization" must not turn into "replay everything".
        raise dlq.FilterError(unknown[0], "unknown field")
    for name in ("org", "type", "code", "since", "until"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise dlq.FilterError(name, "must be a string")
    ids = body.get("ids")
    if ids is not None and (
        not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids)
    ):
        raise dlq.FilterError("ids", "must be a list of dead-letter ids")
    if ids == []:
        raise dlq.FilterError("ids", "must not be empty (leave it out to match any id)")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise dlq.FilterError("dry_run", "must be true or false")
    limit = None if body.get("limit") is None else _limit(body["limit"])
    filters = dlq.Filters.parse(
        org=body.get("org"),
        type=body.get("type"),
        code=body.get("code"),
        since=body.get("since"),
        until=body.get("until"),
        ids=ids,
        limit=limit,
    )
    return filters, dry_run


async def replay_dead_letters(request: web.Request) -> web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return _invalid([{"field": "body", "code": "invalid", "message": "not valid JSON"}])
    try:
        filters, dry_run = _replay_filters(body)
    except dlq.FilterError as exc:
        return _field_error(exc)
    settings = request.app[CONTEXT].settings
    actor = f"api:{request.get(CALLER, 'unknown')}"
    try:
        result = await dlq.replay(
            settings, filters, actor=actor, dry_run=dry_run, lock_wait=LOCK_WAIT_S
        )
    except _BROKER_ERRORS as exc:
        return _unavailable(exc)
    answer: dict[str, Any] = {**result.summary(), "filters": filters.describe()}
    if dry_run:
        answer["items"] = [letter.row() for letter in result.letters]
    else:
        answer["ids"] = [letter.id for letter in result.letters]
    return web.json_response(answer, status=200 if result.error is None else 502)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/dead-letters", list_dead_letters)
    app.router.add_post("/v1/dead-letters/replay", replay_dead_letters)
    app.router.add_get("/v1/dead-letters/{id}", show_dead_letter)
