"""The ``integration_configs`` table: one row per Moment organization, its client secret
encrypted (:class:`~worker.config.crypto.SecretBox`).

Here rather than in ``worker/config`` because ``config`` is the leaf of the layering (DESIGN §2)
and every role reads configs: sync and notify through
:class:`~worker.store.config_cache.ConfigCache`, setup and the API through
:class:`ConfigRepository`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import ValidationError
from sqlalchemy import Boolean, Column, Integer, String, Table, Text, delete, select, update

from worker.config.crypto import SecretDecryptError
from worker.config.model import ConfigValidationError, IntegrationConfig, field_errors
from worker.log import register_secret
from worker.store.base import ORG_ID_MAX, StoreError, check_org_id
from worker.store.migrations import JsonType, UtcDateTime, metadata
from worker.store.outcomes import sync_outcomes
from worker.store.time import utcnow

if TYPE_CHECKING:
    from worker.store.engine import Store

log = structlog.get_logger(__name__)

integration_configs = Table(
    "integration_configs",
    metadata,
    Column("org_id", String(ORG_ID_MAX), primary_key=True),
    Column("config", JsonType, nullable=False),  # IntegrationConfig without the secret
    Column("secret_ciphertext", Text, nullable=False),  # Fernet token of the client secret
    # Copied out of ``config`` so the pollers can select its organizations in SQL.
    Column("import_expenses", Boolean, nullable=False, default=False),
    Column("import_payments", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False),  # 1 on create, +1 on every save
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


class StoredConfigError(StoreError):
    """A stored configuration cannot be used (no longer valid, or its secret undecryptable)."""


@dataclass(frozen=True)
class StoredConfig:
    """A saved configuration with its secret (internal use) and its row metadata."""

    org_id: str
    config: IntegrationConfig
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def stamp(self) -> tuple[int, datetime]:
        """Changes whenever the row changes (also when it is deleted and created again)."""
        return (self.version, self.updated_at)

    def to_public_dict(self) -> dict[str, Any]:
        """The config as users may see it (no secret), with version and timestamps."""
        return {
            **self.config.to_public_dict(),
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class ConfigRepository:
    """The ``integration_configs`` table: one row per Moment organization."""

    table = integration_configs

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, org_id: str) -> StoredConfig | None:
        """The organization's config including its decrypted secret, or ``None``."""
        t = self.table
        async with self._store.read() as conn:
            row = (await conn.execute(select(t).where(t.c.org_id == check_org_id(org_id)))).first()
        if row is None:
            return None
        try:
            secret = self._store.secrets.decrypt(row.secret_ciphertext)
        except SecretDecryptError as exc:
            raise StoredConfigError(f"organization {org_id}: {exc}") from None
        register_secret(secret)
        try:
            config = IntegrationConfig.from_stored(row.config, secret)
        except ValidationError as exc:
            problems = "; ".join(e["message"] for e in field_errors(exc))
            raise StoredConfigError(
                f"organization {org_id}: the stored configuration is no longer valid: {problems}"
            ) from None
        return StoredConfig(org_id, config, row.version, row.created_at, row.updated_at)

    async def stamp(self, org_id: str) -> tuple[int, datetime] | None:
        """``(version, updated_at)`` of the row without loading it: a cheap change check."""
        t = self.table
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    select(t.c.version, t.c.updated_at).where(t.c.org_id == check_org_id(org_id))
                )
            ).first()
        return None if row is None else (row.version, row.updated_at)

    async def put(self, org_id: str, config: IntegrationConfig) -> Literal["Created", "Updated"]:
        """Save the config. ``Created`` when this call made the row, else ``Updated``.

        Without ``client_secret`` the stored secret is kept; creating without one raises
        :class:`ConfigValidationError` on ``client_secret``. Concurrent saves for one
        organization leave one consistent row and exactly one of them reports ``Created``.
        """
        t = self.table
        org_id = check_org_id(org_id)
        now = utcnow()
        values: dict[str, Any] = {
            "config": config.to_storage_dict(),
            "import_expenses": config.import_expenses,
            "import_payments": config.import_payments,
            "updated_at": now,
        }
        if config.client_secret is None:
            async with self._store.write() as conn:
                version = (
                    await conn.execute(
                        update(t)
                        .where(t.c.org_id == org_id)
                        .values(**values, version=t.c.version + 1)
                        .returning(t.c.version)
                    )
                ).scalar()
            if version is None:
                raise ConfigValidationError(
                    [
                        {
                            "field": "client_secret",
                            "code": "required",
                            "message": "Client Secret is required when the integration is "
                            "set up for the first time.",
                        }
                    ]
                )
            return "Updated"
        values["secret_ciphertext"] = self._store.secrets.encrypt(
            config.client_secret.get_secret_value()
        )
        stmt = self._store.upsert(
            t,
            {**values, "org_id": org_id, "version": 1, "created_at": now},
            key=["org_id"],
            set_=lambda new: {
                "config": new.config,
                "import_expenses": new.import_expenses,
                "import_payments": new.import_payments,
                "secret_ciphertext": new.secret_ciphertext,
                "updated_at": new.updated_at,
                "version": t.c.version + 1,
            },
        )
        async with self._store.write() as conn:
            version = (await conn.execute(stmt.returning(t.c.version))).scalar_one()
        # Only the inserting statement sees version 1: every update adds one.
        return "Created" if version == 1 else "Updated"

    async def delete(self, org_id: str) -> bool:
        """Remove the config and the organization's sync outcomes; ``False`` if there was none."""
        org_id = check_org_id(org_id)
        async with self._store.write() as conn:
            result = await conn.execute(delete(self.table).where(self.table.c.org_id == org_id))
            await conn.execute(delete(sync_outcomes).where(sync_outcomes.c.org_id == org_id))
        return bool(result.rowcount)

    async def list_orgs(
        self, *, import_expenses: bool | None = None, import_payments: bool | None = None
    ) -> list[str]:
        """Organization ids with a config, sorted; filter on the import toggles."""
        t = self.table
        query = select(t.c.org_id).order_by(t.c.org_id)
        if import_expenses is not None:
            query = query.where(t.c.import_expenses.is_(import_expenses))
        if import_payments is not None:
            query = query.where(t.c.import_payments.is_(import_payments))
        async with self._store.read() as conn:
            return list((await conn.execute(query)).scalars())

    async def rotate_secrets(self) -> int:
        """Re-encrypt secrets not yet under the first key; returns how many were re-encrypted.

        Rows are updated one by one and only if unchanged meanwhile (a concurrent save already
        used the first key). Rows no key can decrypt are reported after the others are done.
        """
        t = self.table
        box = self._store.secrets
        async with self._store.read() as conn:
            rows = (await conn.execute(select(t.c.org_id, t.c.secret_ciphertext))).all()
        rotated = 0
        broken: list[str] = []
        for row in rows:
            org_id, token = str(row.org_id), str(row.secret_ciphertext)
            if box.is_current(token):
                continue
            try:
                new_token = box.rotate(token)
            except SecretDecryptError:
                broken.append(org_id)
                continue
            async with self._store.write() as conn:
                result = await conn.execute(
                    update(t)
                    .where(t.c.org_id == org_id, t.c.secret_ciphertext == token)
                    .values(secret_ciphertext=new_token)
                )
            rotated += result.rowcount
        if broken:
            raise SecretDecryptError(
                f"re-encrypted {rotated} client secret(s), but those of organization(s) "
                f"{', '.join(broken)} cannot be decrypted with any key in BC_SYNC_SECRET_KEY; "
                "put the old key back after the new one, or save those integrations again."
            )
        log.info("store.secrets_rotated", count=rotated)
        return rotated
