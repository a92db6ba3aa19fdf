"""Settings (pydantic-settings) and the per-organization integration config model (a leaf)."""

from worker.config.crypto import SecretBox, SecretDecryptError, SecretKeyError
from worker.config.model import (
    ConfigValidationError,
    ConnectionFields,
    FieldError,
    IntegrationConfig,
    parse_config,
    parse_connection_fields,
)
from worker.config.settings import Settings, SettingsError, load_settings

__all__ = [
    "ConfigValidationError",
    "ConnectionFields",
    "FieldError",
    "IntegrationConfig",
    "SecretBox",
    "SecretDecryptError",
    "SecretKeyError",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_config",
    "parse_connection_fields",
]
