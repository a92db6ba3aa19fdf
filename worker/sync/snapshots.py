"""Snapshots embedded in an event (an invoice's customer and its lines' projects), written to BC
under the ledger's newest-wins rule: a snapshot never overwrites a newer change of that customer
or project. Its change is the invoice event's (time, sequence, id); when it is applied, the
customer's or project's ledger row records it, so an older ``moment.customer.updated`` that
arrives later is superseded by it.
"""

from __future__ import annotations

import structlog

from worker.bc import BcConnection
from worker.config.model import IntegrationConfig
from worker.events.handlers import DataWarning
from worker.events.models import Customer, Project
from worker.sync import customers, projects
from worker.sync.context import CompanyFacts, SyncContext

log = structlog.get_logger(__name__)


async def customer(
    ctx: SyncContext, bc: BcConnection, config: IntegrationConfig, snapshot: Customer
) -> tuple[DataWarning, ...]:
    """Create or update the customer from the snapshot, unless BC holds a newer change; the
    warnings of that export (none when skipped)."""
    if ctx.ledger is None:
        return (await customers.upsert(ctx, bc, config, snapshot)).warnings
    async with ctx.ledger.embedded("customer", snapshot.id, snapshot.number) as fresh:
        if fresh is None:
            log.info("snapshots.customer_older", customer=snapshot.number)
            return ()
        result = await customers.upsert(ctx, bc, config, snapshot)
        fresh.applied(bc_id=result.customer.id, bc_number=result.customer.number)
        return result.warnings


async def project(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    snapshot: Project,
) -> None:
    """Create or rename the project's dimension value, unless BC holds a newer change."""
    if ctx.ledger is None:
        await projects.upsert(bc, config, facts, snapshot)
        return
    async with ctx.ledger.embedded("project", snapshot.id, snapshot.number) as fresh:
        if fresh is None:
            log.info("snapshots.project_older", project=snapshot.number)
            return
        code = await projects.upsert(bc, config, facts, snapshot)
        fresh.applied(bc_number=code)
