"""Infrastructure: the SQL engine, schema migrations, leases and shared time helpers, and the
repositories every role reads (integration configs, sync outcomes, scheduled retries)."""

from worker.store.base import ORG_ID_MAX, StoreError, check_org_id, unavailable
from worker.store.config_cache import ConfigCache
from worker.store.configs import (
    ConfigRepository,
    StoredConfig,
    StoredConfigError,
    integration_configs,
)
from worker.store.engine import Store
from worker.store.leases import Leases
from worker.store.migrations import MIGRATIONS, JsonType, Migration, UtcDateTime, metadata
from worker.store.outcomes import SyncOutcome, SyncOutcomeRepository, sync_outcomes
from worker.store.retries import ScheduledRetries, ScheduledRetry, scheduled_retries
from worker.store.time import iso, utcnow

__all__ = [
    "MIGRATIONS",
    "ORG_ID_MAX",
    "ConfigCache",
    "ConfigRepository",
    "JsonType",
    "Leases",
    "Migration",
    "ScheduledRetries",
    "ScheduledRetry",
    "Store",
    "StoreError",
    "StoredConfig",
    "StoredConfigError",
    "SyncOutcome",
    "SyncOutcomeRepository",
    "UtcDateTime",
    "check_org_id",
    "integration_configs",
    "iso",
    "metadata",
    "scheduled_retries",
    "sync_outcomes",
    "unavailable",
    "utcnow",
]
