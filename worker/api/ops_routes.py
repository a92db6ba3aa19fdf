"""Dead-letter routes of the admin API, so Moment's back-office can show failures and retry them.

- ``GET /v1/dead-letters`` ?org&type&code&since&until&limit&id&group_by → rows or counts
- ``GET /v1/dead-letters/{id}`` → one dead letter in full (envelope, headers, history, fix)
- ``POST /v1/dead-letters/replay`` {org, type, code, since, until, limit, ids, dry_run}

Same logic as ``bc-sync dlq`` (:mod:`worker.ops.dlq`), on the process's broker connection
(:class:`~worker.ops.dlq.DeadLetters`). Listing reads only. Errors are answered by the API's
error middleware (422 filters, 409 busy, 503 broker unreachable).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from worker.api.app import BUSY, CALLER, CONTEXT, UNAVAILABLE, answer, field_errors
from worker.api.models import (
    DeadLetterDetail,
    DeadLetterGroups,
    DeadLetterList,
    ErrorAnswer,
    ReplayAnswer,
    ReplayRequest,
)
from worker.api.openapi import FIELD_ERRORS, Answer, Operation, Param, describe
from worker.ops import dlq

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
REPLAY_FIELDS = frozenset({"org", "type", "code", "since", "until", "limit", "ids", "dry_run"})


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


_TIME = "ISO 8601 time (e.g. 2026-11-20T10:00:00Z) or a span back from now (`30m`, `2h`, `7d`)."
FILTER_PARAMS = (
    Param("org", "Organization id; `*` matches any characters.", example="org-acme"),
    Param("type", "Event type, e.g. `moment.invoice.*`."),
    Param("code", "Failure code, e.g. `BC-*`."),
    Param("since", f"Last failure at or after this time: {_TIME}"),
    Param("until", f"Last failure before this time: {_TIME}"),
)


@describe(
    Operation(
        summary="Dead letters, filtered: rows, or counts with group_by",
        tag="dead letters",
        description="Reads only. Without `group_by` the rows are paged by `limit`.",
        query=(
            *FILTER_PARAMS,
            Param(
                "limit",
                f"Rows at most (default {DEFAULT_LIMIT}).",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            ),
            Param("id", "Dead-letter or event id (repeat for several).", repeated=True),
            Param(
                "group_by",
                "Count per code, organization or type instead of listing rows.",
                {"type": "string", "enum": list(dlq.GROUP_BY)},
            ),
        ),
        responses={
            200: Answer(
                (DeadLetterList, DeadLetterGroups),
                "Rows (`items`), or counts (`groups`) with group_by.",
            ),
            409: BUSY,
            422: FIELD_ERRORS,
            503: UNAVAILABLE,
        },
    )
)
async def list_dead_letters(request: web.Request) -> web.Response:
    q = request.query
    unknown = set(q) - {"org", "type", "code", "since", "until", "limit", "id", "group_by"}
    if unknown:
        return field_errors(
            [{"field": k, "code": "unknown", "message": "unknown parameter"} for k in unknown]
        )
    group_by = q.get("group_by") or None
    if group_by is not None and group_by not in dlq.GROUP_BY:
        raise dlq.FilterError("group_by", f"must be one of {', '.join(dlq.GROUP_BY)}")
    # Counts look at every match; a row listing is paged by limit.
    limit = None if group_by and not q.get("limit") else _limit(q.get("limit"))
    filters = dlq.Filters.from_fields(q, ids=q.getall("id", []), limit=limit)
    letters = await _dead_letters(request).list_letters(filters)
    if group_by:
        groups = dlq.group_counts(letters, group_by)
        return answer(
            DeadLetterGroups.of(
                {
                    "group_by": group_by,
                    "total": len(letters),
                    "groups": [{"key": k, "count": n} for k, n in groups],
                    "filters": filters.describe(),
                }
            )
        )
    return answer(
        DeadLetterList.of(
            {
                "count": len(letters),
                "limit": filters.limit,
                "items": [letter.row() for letter in letters],
                "filters": filters.describe(),
            }
        )
    )


@describe(
    Operation(
        summary="One dead letter in full: envelope, headers, history, what the code means",
        tag="dead letters",
        path=(
            Param(
                "id",
                "The dead letter's id or its event's id (as in the list).",
                where="path",
                example="3f0c8d52-5b2e-4d4a-9f65-0d6c2b8e4a11",
            ),
        ),
        responses={
            200: Answer(DeadLetterDetail, "The dead letter, redacted."),
            404: Answer(ErrorAnswer, "No dead letter has this id (`error`: not_found, `id`)."),
            409: BUSY,
            503: UNAVAILABLE,
        },
    )
)
async def show_dead_letter(request: web.Request) -> web.Response:
    message_id = request.match_info["id"]
    detail = await _dead_letters(request).show(message_id)
    if detail is None:
        return answer(ErrorAnswer(error="not_found", id=message_id), status=404)
    return answer(DeadLetterDetail.of(detail))


def _replay_filters(body: Any) -> tuple[dlq.Filters, bool]:
    if not isinstance(body, dict):
        raise dlq.FilterError("body", "must be a JSON object")
    unknown = sorted(set(body) - REPLAY_FIELDS)
    if unknown:
        # A typo such as "organization" must not turn into "replay everything".
        raise dlq.FilterError(unknown[0], "unknown field")
    for name in dlq.FILTER_FIELDS:
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
    filters = dlq.Filters.from_fields(body, ids=ids, limit=limit)
    return filters, dry_run


@describe(
    Operation(
        summary="Replay dead letters to the exports queue (or only list them: dry_run)",
        tag="dead letters",
        description=(
            "Each one is published with a confirm, then removed from the dead-letter queue: "
            "never lost. A body is optional (none = every dead letter)."
        ),
        body=ReplayRequest,
        body_required=False,
        body_description="Filters (all must match) and dry_run.",
        responses={
            200: Answer(ReplayAnswer, "Replayed (or, dry run, what would be)."),
            409: BUSY,
            422: FIELD_ERRORS,
            502: Answer(
                ReplayAnswer, "A publish failed: the run stopped there, the rest stay (`error`)."
            ),
            503: UNAVAILABLE,
        },
    )
)
async def replay_dead_letters(request: web.Request) -> web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return field_errors([{"field": "body", "code": "invalid", "message": "not valid JSON"}])
    filters, dry_run = _replay_filters(body)
    actor = f"api:{request.get(CALLER, 'unknown')}"
    result = await _dead_letters(request).replay(filters, actor=actor, dry_run=dry_run)
    report: dict[str, Any] = {**result.summary(), "filters": filters.describe()}
    if dry_run:
        report["items"] = [letter.row() for letter in result.letters]
    else:
        report["ids"] = [letter.id for letter in result.letters]
    return answer(ReplayAnswer.of(report), status=200 if result.error is None else 502)


def _dead_letters(request: web.Request) -> dlq.DeadLetters:
    dead_letters = request.app[CONTEXT].dead_letters
    assert dead_letters is not None  # ApiContext fills it in
    return dead_letters


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/dead-letters", list_dead_letters)
    app.router.add_post("/v1/dead-letters/replay", replay_dead_letters)
    app.router.add_get("/v1/dead-letters/{id}", show_dead_letter)
