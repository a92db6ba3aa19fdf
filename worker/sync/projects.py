"""``moment.project.created`` / ``.updated`` → a value of the configured project dimension."""

from __future__ import annotations

from typing import Any

from worker.bc import BcConflict, BcConnection, BcError
from worker.config.model import IntegrationConfig
from worker.errors import Permanent
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import ExportedData, Project
from worker.sync.context import CompanyFacts, SyncContext, bc_failure
from worker.sync.transforms import dimension_value


async def handle(ctx: SyncContext, event: Event[Any]) -> Outcome:
    config = await ctx.enabled(event.org, "export_projects")
    if isinstance(config, Outcome):
        return config
    project: Project = event.data.project
    bc = ctx.connection(config)
    try:
        facts = await ctx.facts(bc)
        code = await upsert(bc, config, facts, project)
    except BcError as exc:
        raise bc_failure(exc, f"project {project.number}", config) from None
    except Permanent as exc:
        if exc.code == "BC-DIMENSION-MISSING":
            ctx.forget_facts(bc)  # the dimension may be added in BC before the replay
        raise
    await ctx.succeeded(
        event,
        "project",
        ExportedData(
            object_type="project",
            moment_id=project.id,
            moment_number=project.number,
            bc_number=code,
        ),
        ref=project.number,
    )
    return Outcome.ok(project=code, dimension=config.project_dimension)


def dimension_id(config: IntegrationConfig, facts: CompanyFacts, dimension: str) -> str:
    """The id of a configured dimension, or a permanent error naming it."""
    dim_id = facts.dimension_ids.get(dimension.upper())
    if dim_id is None:
        raise Permanent(
            "BC-DIMENSION-MISSING",
            f"Dimension '{dimension}' does not exist in company '{config.company_name}'. Add it "
            "in Business Central or change the integration settings.",
            missing=[{"kind": "dimension", "value": dimension}],
        )
    return dim_id


async def upsert(
    bc: BcConnection, config: IntegrationConfig, facts: CompanyFacts, project: Project
) -> str:
    """Find the value → create it, or rename it when the name changed (≤ 2 calls)."""
    dimension = config.project_dimension or ""
    code, name = dimension_value(project)
    existing = await bc.find_dimension_value(dimension_id(config, facts, dimension), code)
    if existing is None:
        try:
            await bc.create_dimension_value(dimension, code, name)
            return code
        except BcConflict:
            pass  # created concurrently by someone else: make sure the name is ours
    elif existing.display_name == name:
        return code
    await bc.rename_dimension_value(dimension, code, name)
    return code
