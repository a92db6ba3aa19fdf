"""Process settings (DESIGN §11): ``BC_SYNC_*`` environment variables, also read from ``.env``."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError


class SettingsError(Exception):
    """A setting has a bad value; the message is one readable line naming it."""


class Settings(BaseSettings):
    """Every knob of the worker. Names are fixed: ops and deploy files rely on them."""

    model_config = SettingsConfigDict(
        env_prefix="BC_SYNC_", env_file=".env", extra="ignore", frozen=True
    )

    # Comma-separated for a cluster: amqp://u:p@node1:5672/,amqp://u:p@node2:5672/
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    exchange: str = Field("moment.events", min_length=1)
    queue_prefix: str = Field("bc-sync", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./bc-sync.db")
    bc_api_url: str = "https://api.businesscentral.dynamics.com"
    authority_url: str = "https://login.microsoftonline.com"
    ca_file: Path | None = None
    # CA of an amqps:// broker with a private certificate (worker.messaging.tls).
    amqp_ca_file: Path | None = None
    client_id: str | None = None
    secret_key: SecretStr | None = None
    api_token: SecretStr | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    smtp_url: SecretStr | None = None
    mail_from: str = "bc-sync@localhost"
    outbox_dir: Path = Path("./outbox")
    # Messages in flight per consumer. Large enough for many organizations at BC's limits;
    # fair_share keeps one busy organization from holding them all.
    prefetch: int = Field(256, ge=1, le=10_000)
    # An organization holding more than its share of the prefetch has its next messages parked
    # on the retry ladder (not an attempt) instead of holding slots; off: one organization may
    # fill the prefetch (the behaviour before issue #22).
    fair_share: bool = True
    # Retry watch (worker/messaging/retry_watch.py): every event put on the retry ladder is
    # recorded until it comes back; one not back within its wait plus this grace is published
    # again by the consumer (sooner once its retry queue and the exports queue are empty).
    # 0 turns the watch off. Checked every retry_watch_interval_s.
    retry_watch_grace_s: float = Field(900, ge=0)
    retry_watch_interval_s: float = Field(30, gt=0)
    # NoDecode: a comma-separated list, not JSON.
    retry_delays: Annotated[tuple[float, ...], NoDecode] = (10, 60, 600, 3600, 21600)
    poll_interval_s: float = Field(300, gt=0)
    # Payment import: how often each organization's invoices are checked (well under Moment's
    # own daily payment run).
    payments_interval_s: float = Field(3600, gt=0)
    log_format: Literal["console", "json"] | None = None
    log_level: str = "INFO"
    # Seconds a stopping worker waits for in-flight handlers before requeueing them.
    shutdown_grace_s: float = Field(25, ge=0)
    # Service names under which the BC admin published the ODataV4 pages (bc-contract.md).
    odata_dimension_values: str = "DimensionValues"
    odata_customer_card: str = "CustomerCard"
    odata_gen_bus_posting_groups: str = "GenBusinessPostingGroups"
    odata_customer_posting_groups: str = "CustomerPostingGroups"
    # Notification digest window and the delay of the first mail after a quiet period.
    digest_window_s: float = Field(900, gt=0)
    digest_first_delay_s: float = Field(60, ge=0)
    # Self-healing dead letters (worker/ops/heal.py, poll role): how often the probe looks in
    # BC for what dead letters miss, and at most how many BC requests per organization a round.
    heal_interval_s: float = Field(300, gt=0)
    heal_max_requests: int = Field(20, ge=1, le=1000)
    # Retention (worker/notify/retention.py, notify role), in days.
    retention_states_days: float = Field(400, gt=0)  # ledger rows unchanged this long
    retention_steps_days: float = Field(90, gt=0)  # ledger history steps
    retention_steps_per_object: int = Field(50, ge=1)  # history steps kept per object
    retention_expenses_days: float = Field(400, gt=0)  # published expense line ids
    retention_notifications_days: float = Field(30, gt=0)  # sent digests and their items
    retention_open_failures_days: float = Field(90, gt=0)  # a failure never resolved

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts:
                raise ValueError("needs at least one delay in seconds, e.g. 10,60,600")
            try:
                return tuple(float(p) for p in parts)
            except ValueError:
                raise ValueError(f"must be comma-separated seconds, got {value!r}") from None
        if isinstance(value, (int, float)):
            return (float(value),)
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("every delay must be a positive number of seconds")
        return value

    @field_validator("bc_api_url", "authority_url")
    @classmethod
    def _https_root(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (msal and BC accept only https)")
        return value.rstrip("/")

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, value: SecretStr) -> SecretStr:
        # One address, or several nodes of a cluster separated by commas (tried in turn,
        # worker.messaging.connection). Messages name the position, never the URL: it holds
        # the password.
        urls = [u.strip() for u in value.get_secret_value().split(",")]
        if not any(urls):
            raise ValueError("needs at least one amqp:// or amqps:// URL")
        for n, url in enumerate(urls, 1):
            if not url.startswith(("amqp://", "amqps://")):
                where = f"address {n} of {len(urls)}" if len(urls) > 1 else "the address"
                raise ValueError(f"{where} must start with amqp:// or amqps://")
        if len({u.split("://", 1)[0] for u in urls}) > 1:
            raise ValueError("every address must use the same scheme (all amqp:// or all amqps://)")
        return SecretStr(",".join(urls))

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("smtp://", "smtps://")):
            raise ValueError("must start with smtp:// (STARTTLS when offered) or smtps:// (TLS)")
        return value

    @field_validator("ca_file", "amqp_ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("amqp_ca_file")
    @classmethod
    def _ca_needs_tls(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        url = info.data.get("amqp_url")
        if (
            value is not None
            and url is not None
            and not url.get_secret_value().startswith("amqps://")
        ):
            raise ValueError("is only used for TLS: BC_SYNC_AMQP_URL must then be amqps://")
        return value

    @property
    def attempts(self) -> int:
        """Total deliveries of one event: the first try plus one per ladder step."""
        return len(self.retry_delays) + 1

    def queue(self, name: str) -> str:
        """Full name of one of our queues, e.g. ``bc-sync.exports``."""
        return f"{self.queue_prefix}.{name}"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into one readable line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "BC_SYNC_" + "_".join(str(p) for p in err["loc"][:1]).upper()
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("; ".join(lines)) from None
    except SourceError as exc:
        # e.g. 'error parsing value for field "prefetch" from source "EnvSettingsSource"'
        raise SettingsError(str(exc).split("\n")[0]) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def exit_on_bad_settings() -> Settings:
    """For entry points: print the bad setting in one line and exit 2."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"bc-sync: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
