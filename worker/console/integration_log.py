"""The console's integration-log page reads the sync ledger through this protocol.

The ledger (per-object state and steps, ``GET …/business-central/objects``) lands from its own
branch; the composition root fills ``ConsoleContext.integration_log`` with an object that has
these three methods once it is there. Until then the nav has no *Integration log* entry and
``/console/log`` answers 404: no page pretends to have data it cannot read.
"""

from __future__ import annotations

from typing import Any, Protocol


class IntegrationLogReader(Protocol):
    async def find(self, org: str, number: str, object_type: str | None) -> list[dict[str, Any]]:
        """The objects whose Moment number (or id) is ``number``: ``object_type``,
        ``moment_id``, ``moment_number``, ``state``."""
        ...

    async def detail(self, org: str, object_type: str, moment_id: str) -> dict[str, Any] | None:
        """One object's state and its ``history`` of steps (``at``, ``step``, ``code``,
        ``detail``)."""
        ...

    async def recent(self, org: str, *, limit: int) -> list[dict[str, Any]]:
        """The organization's most recently changed objects, newest first."""
        ...
