"""The reconciliation on the admin API (issue 19), bearer auth like every ``/v1`` route:

``GET /v1/organizations/{org}/integrations/business-central/reconciliation?from=&to=`` →
the report of ``bc-sync reconcile --json`` (summary, rows with their ``class``), read-only in
Business Central. 422 for a bad period, 404 for an organization without the integration, 502
when Business Central could not be read.
"""

from __future__ import annotations

from aiohttp import web

from worker.api.app import CONTEXT, field_errors
from worker.api.config_routes import PATH as CONFIG_PATH
from worker.api.models import ErrorAnswer
from worker.api.openapi import FIELD_ERRORS, Answer, Operation, Param, describe
from worker.bc import BcError
from worker.log import redact_text
from worker.ops.reconcile import ReconcileError, parse_period
from worker.store import check_org_id

PATH = CONFIG_PATH + "/reconciliation"


@describe(
    Operation(
        summary="Month-end reconciliation of what Moment sent against BC's posted documents",
        tag="reconciliation",
        description="Read-only in Business Central. Rows have a `class`: missing_in_bc, "
        "duplicated_in_bc, different, unknown_in_bc or matched.",
        query=(
            Param("from", "First document date of the period (YYYY-MM-DD)."),
            Param("to", "Last document date of the period (YYYY-MM-DD)."),
        ),
        responses={
            200: Answer(
                None,
                "The summary (counts and sums per class and currency) and the rows.",
                schema={"type": "object", "required": ["summary", "rows"]},
            ),
            404: Answer(ErrorAnswer, "The organization has no integration (not_configured)."),
            422: FIELD_ERRORS,
            502: Answer(ErrorAnswer, "Business Central could not be read (bc_error)."),
        },
    )
)
async def get_reconciliation(request: web.Request) -> web.Response:
    reconciler = request.app[CONTEXT].reconciliation()
    try:
        org = check_org_id(request.match_info["org"])
    except ValueError as exc:
        return field_errors([{"field": "org", "code": "invalid", "message": str(exc)}])
    try:
        period = parse_period(request.query.get("from"), request.query.get("to"))
    except ReconcileError as exc:
        return field_errors([{"field": exc.field, "code": "invalid", "message": exc.message}])
    try:
        report = await reconciler.run(org, period)
    except ReconcileError as exc:
        return web.json_response({"error": "not_configured", "message": exc.message}, status=404)
    except BcError as exc:
        message = redact_text(exc.message or type(exc).__name__)
        return web.json_response({"error": "bc_error", "message": message}, status=502)
    return web.json_response(report.to_dict())


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_reconciliation)
