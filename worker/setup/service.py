"""Saving, reading, deleting and re-verifying an organization's integration config, and the
options call: the one code path behind the admin API (``worker.api.config_routes``) and the
CLI (``worker.cli.config``).

Every save and delete writes one ``audit`` line (who, which organization, and the action
``config.created`` / ``config.updated`` / ``config.deleted``); the secret never appears in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog
from pydantic import SecretStr

from worker.bc import BcHub
from worker.config.model import ConfigValidationError, FieldError, parse_config
from worker.config.model import parse_connection_fields as parse_fields
from worker.log import register_secret
from worker.setup.verify import DEFAULT_TIMEOUT_S, Options, VerifiedFacts, options, verify
from worker.store import ConfigCache, Store, StoredConfig, StoredConfigError, check_org_id

log = structlog.get_logger(__name__)

SECRET_REQUIRED: FieldError = {
    "field": "client_secret",
    "code": "required",
    "message": "Client Secret is required when the integration is set up for the first time.",
}
SECRET_UNREADABLE: FieldError = {
    "field": "client_secret",
    "code": "unreadable",
    "message": "The stored Client Secret can no longer be read (the encryption key changed); "
    "enter the secret again.",
}


class NotConfigured(LookupError):
    """The organization has no Business Central integration."""

    def __init__(self, org_id: str) -> None:
        super().__init__(f"organization {org_id} has no Business Central integration")
        self.org_id = org_id


class ConfigService:
    """The configuration operations of one process (store, BC hub, optional config cache)."""

    def __init__(
        self,
        store: Store,
        hub: BcHub,
        cache: ConfigCache | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.hub = hub
        self.cache = cache
        self.timeout_s = timeout_s

    async def get(self, org_id: str) -> StoredConfig | None:
        """The saved config (use ``to_public_dict()`` to show it: it holds the secret)."""
        return await self.store.configs.get(check_org_id(org_id))

    async def put(
        self, org_id: str, body: Mapping[str, Any] | Any, *, actor: str
    ) -> Literal["Created", "Updated"]:
        """Validate, verify against BC, then store. Without ``client_secret`` the stored one is
        used for the verification and kept.

        Raises :class:`ConfigValidationError` (nothing saved) or
        :class:`~worker.setup.verify.BcUnreachable` (nothing saved, try later).
        """
        org_id = check_org_id(org_id)
        try:
            config = parse_config(body)
            secret = await self._secret(org_id, config.client_secret)
            await verify(config, self.hub, secret=secret, timeout_s=self.timeout_s)
            status = await self.store.configs.put(org_id, config)
        except ConfigValidationError as exc:
            # Which fields, not the messages: those may quote what was typed.
            fields = sorted({f"{e['field']} ({e['code']})" for e in exc.errors})
            log.info("config.rejected", org=org_id, actor=actor, errors=fields)
            raise
        self._changed(org_id, status, actor)
        return status

    async def delete(self, org_id: str, *, actor: str) -> bool:
        """Remove the config; ``False`` when there was none."""
        org_id = check_org_id(org_id)
        deleted = await self.store.configs.delete(org_id)
        if deleted:
            self._changed(org_id, "Deleted", actor)
        return deleted

    async def verify(self, org_id: str) -> VerifiedFacts:
        """Verify the saved config against BC as it is now (``bc-sync verify``)."""
        stored = await self.get(org_id)
        if stored is None:
            raise NotConfigured(org_id)
        return await verify(stored.config, self.hub, timeout_s=self.timeout_s)

    async def options(self, org_id: str, body: Mapping[str, Any] | Any) -> Options:
        """The dialog's drop-downs for the credentials in ``body``; without a secret, the
        organization's stored one is used."""
        org_id = check_org_id(org_id)
        fields = parse_fields(body)
        secret = await self._secret(org_id, fields.client_secret)
        return await options(fields, self.hub, secret=secret, timeout_s=self.timeout_s)

    async def _secret(self, org_id: str, given: SecretStr | None) -> SecretStr:
        """The secret typed in the form (masked in logs from now on), else the stored one."""
        if given is None:
            return await self._stored_secret(org_id)
        register_secret(given.get_secret_value())
        return given

    async def _stored_secret(self, org_id: str) -> SecretStr:
        try:
            stored = await self.store.configs.get(org_id)
        except StoredConfigError:
            raise ConfigValidationError([SECRET_UNREADABLE]) from None
        if stored is None or stored.config.client_secret is None:
            raise ConfigValidationError([SECRET_REQUIRED])
        return stored.config.client_secret

    def _changed(self, org_id: str, action: str, actor: str) -> None:
        if self.cache is not None:
            self.cache.invalidate(org_id)
        # The one audit event of the product (like dlq.replay / dlq.purge): who, what, which.
        log.info("audit", action=f"config.{action.lower()}", actor=actor, org=org_id)
